import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp1.py').read().split('def feats')[0])
fV,gV,fT,gT=pickle.load(open('/work/qres/k10_feats.pkl','rb'))
S=pickle.load(open('/work/qres/k10_pools.pkl','rb'))
def frontier(pred,conf,gold,rec=0.85):
    o=conf[gold<0]; t=np.quantile(o,rec); return metrics(pred,conf,t,gold)[0]
def rep(name,sv,st,cv=None,ct=None):
    cv=sv.max(1) if cv is None else cv; ct=st.max(1) if ct is None else ct
    report(name,sv.argmax(1),cv,gV,st.argmax(1),ct,gT)
    print(f'    diag: test acc at test-recall .85 = {frontier(st.argmax(1),ct,gT):.3f}; .80 = {frontier(st.argmax(1),ct,gT,.8):.3f}; .90 = {frontier(st.argmax(1),ct,gT,.9):.3f}; val acc at val-recall .85 = {frontier(sv.argmax(1),cv,gV):.3f}')
rep('centroid',fV['cent'],fT['cent'])
rep('cent+1.5bag',fV['cent']+1.5*fV['bag'],fT['cent']+1.5*fT['bag'])
rep('cent_nt',S['nt_inner'][0],S['nt_inner'][1])
for lam in [0.5,1.0]:
    rep(f'cent_nt+{lam}bag',S['nt_inner'][0]+lam*fV['bag'],S['nt_inner'][1]+lam*fT['bag'])
