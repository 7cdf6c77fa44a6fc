import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp1.py').read().split('def run')[0].split('def feats')[0])  # idf, C, order
fV,gV,fT,gT=pickle.load(open('/work/qres/k10_feats.pkl','rb'))
def ex2route(X,how):
    X=X[:,order].reshape(len(X),R,10)
    if how=='max': return X.max(2)
    if how=='mean': return X.mean(2)
    n=int(how[3:]); return np.sort(X,2)[:,:,-n:].mean(2)
def combos(key,how):
    if key in('bag','bag_idf'): return fV[key],fT[key]
    if key=='sym_idf': return ex2route((fV['q2e_idf']+fV['e2q_idf'])/2,how),ex2route((fT['q2e_idf']+fT['e2q_idf'])/2,how)
    if key=='sym': return ex2route((fV['q2e']+fV['e2q'])/2,how),ex2route((fT['q2e']+fT['e2q'])/2,how)
    return ex2route(fV[key],how),ex2route(fT[key],how)
res=[]
for key,how in [('q2e','top3'),('q2e','mean'),('q2e_idf','top3'),('q2e_idf','mean'),('bag',''),('bag_idf',''),('sym','top3'),('sym_idf','top3'),('sym','mean'),('e2q','top3')]:
    XV,XT=combos(key,how)
    best=None
    for lam in [0.1,0.2,0.3,0.5,0.75,1,1.5,2,3]:
        SV=fV['cent']+lam*XV
        t,v=calibrate(SV.argmax(1),SV.max(1),gV)
        if best is None or v>best[0]: best=(v,lam)
    v,lam=best
    SV=fV['cent']+lam*XV; ST=fT['cent']+lam*XT
    report(f'cent+{lam}*{key} {how} (val bal {v:.4f})',SV.argmax(1),SV.max(1),gV,ST.argmax(1),ST.max(1),gT)
