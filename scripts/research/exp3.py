import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp1.py').read().split('def feats')[0])
fV,gV,fT,gT=pickle.load(open('/work/qres/k10_feats.pkl','rb'))
def frontier(pred,conf,gold,rec=0.85):
    o=conf[gold<0]; t=np.quantile(o,rec); return metrics(pred,conf,t,gold)[0]
def rep(name,pv,cv,pt,ct):
    a,r,p,top=report(name,pv,cv,gV,pt,ct,gT)
    print(f'    diag: test acc at test-recall .85 = {frontier(pt,ct,gT):.3f}; val acc at val-recall .85 = {frontier(pv,cv,gV):.3f}')
SVc,STc=fV['cent'],fT['cent']
SVb,STb=fV['cent']+1.5*fV['bag'],fT['cent']+1.5*fT['bag']
rep('centroid',SVc.argmax(1),SVc.max(1),STc.argmax(1),STc.max(1))
rep('cent+1.5bag',SVb.argmax(1),SVb.max(1),STb.argmax(1),STb.max(1))
pV,pT=SVb.argmax(1),STb.argmax(1)
# confidence variants with decision from cent+bag
def kth(cos,k): return -np.sort(-cos,1)[:,k-1]
for T in [0.02,0.05,0.1]:
    e=lambda S: T*np.log(np.exp((S-S.max(1,keepdims=True))/T).sum(1))+S.max(1)
    rep(f'  conf=energy T={T} (cent+bag)',pV,e(SVb),pT,e(STb))
# margin
for m in [0.25,0.5]:
    sv=np.sort(SVb,1); st=np.sort(STb,1)
    rep(f'  conf=top1-{m}*top2',pV,sv[:,-1]-m*sv[:,-2],pT,st[:,-1]-m*st[:,-2])
# Mahalanobis: shared within-class cov from exemplars, shrinkage
exs_=exs; mu=np.zeros((R,384)); np.add.at(mu,ex_route,exs_); mu/=10
Xc=exs_-mu[ex_route]; Sig=Xc.T@Xc/len(Xc)
qV=np.load(P+'V_sent.npy'); qT=np.load(P+'T_sent.npy')
for a in [0.1,0.3,0.6,0.9]:
    S=(1-a)*Sig+a*np.trace(Sig)/384*np.eye(384); Pm=np.linalg.inv(S)
    def md(q):
        A=q@Pm; d=(A*q).sum(1)[:,None]-2*A@mu.T+((mu@Pm)*mu).sum(1)[None]; return -d
    mV,mT=md(qV),md(qT)
    rep(f'  Maha shrink {a}: decision+conf',mV.argmax(1),mV.max(1),mT.argmax(1),mT.max(1))
    rep(f'  Maha shrink {a}: conf only',pV,mV.max(1),pT,mT.max(1))
