import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
o=pickle.load(open('/work/qres/kall.pkl','rb'))
fV,gV,fT,gT=pickle.load(open('/work/qres/k10_feats.pkl','rb')); S=pickle.load(open('/work/qres/k10_pools.pkl','rb'))
k10={'V':dict(cent=fV['cent'],cent_nt=S['nt_inner'][0],bag=fV['bag'],gold=gV),'T':dict(cent=fT['cent'],cent_nt=S['nt_inner'][1],bag=fT['bag'],gold=gT)}
def restricted(d,base,lam,N):
    s=d[base]+lam*d['bag']
    if N is None: return s
    keep=np.argsort(-d['cent'],1)[:,:N]; out=np.full_like(s,-9); np.put_along_axis(out,keep,np.take_along_axis(s,keep,1),1); return out
for K,dd,base,lam in [('10',k10,'cent_nt',0.5),('10',k10,'cent',1.5),('all',o,'cent_nt',1.0),('all',o,'cent',1.0)]:
    for N in [None,5,10,20]:
        sv=restricted(dd['V'],base,lam,N); st=restricted(dd['T'],base,lam,N)
        report(f'K={K} {base}+{lam}bag, bag only on top-{N} centroid routes',sv.argmax(1),sv.max(1),dd['V']['gold'],st.argmax(1),st.max(1),dd['T']['gold'])
