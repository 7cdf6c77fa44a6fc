# Shrinkage-LDA whitening and Mahalanobis scores on sentence vectors. Usage: python3 whiten.py all (or 10).
import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
K=None if sys.argv[1]=='all' else int(sys.argv[1])
train=load('train')
intents,idx,ex_route=exemplar_index(train['labels'],K)
X=train['sent'][idx].astype(np.float64)
R=150
def qs(a,b):
    A=load(a);B=load(b); s=np.vstack([A['sent'],B['sent']]).astype(np.float64)
    g=np.array([intents.index(l) if l!='oos' else -1 for l in A['labels']+B['labels']]); return s,g
qV,gV=qs('val','oos_val'); qT,gT=qs('test','oos_test')
def frontier(pred,conf,gold,rec=0.85):
    o=conf[gold<0]; t=np.quantile(o,rec); return metrics(pred,conf,t,gold)[0]
def rep(name,SV,ST,obj='balanced'):
    pv,cv,pt,ct=SV.argmax(1),SV.max(1),ST.argmax(1),ST.max(1)
    report(name,pv,cv,gV,pt,ct,gT,obj)
    print(f'    diag: test acc at test-recall .85 = {frontier(pt,ct,gT):.3f}')
cnt=np.bincount(ex_route,minlength=R)
mu=np.zeros((R,384)); np.add.at(mu,ex_route,X); mu/=cnt[:,None]
C=mu/np.linalg.norm(mu,axis=1,keepdims=True)
rep('centroid',qV@C.T,qT@C.T)
Xc=X-mu[ex_route]; Sig=Xc.T@Xc/len(Xc)
ev,evec=np.linalg.eigh(Sig)
for a in [0.02,0.05,0.1,0.2,0.4]:
    S=(1-a)*Sig+a*np.trace(Sig)/384*np.eye(384)
    w,V=np.linalg.eigh(S); W=V@np.diag(w**-0.5)@V.T
    Pm=W@W
    def md(q):
        A=q@Pm; return -((A*q).sum(1)[:,None]-2*A@mu.T+((mu@Pm)*mu).sum(1)[None])
    rep(f'maha a={a}',md(qV),md(qT))
    # whitened cosine to whitened centroid
    wc=mu@W; wc/=np.linalg.norm(wc,axis=1,keepdims=True)
    def wcos(q):
        z=q@W; z/=np.linalg.norm(z,axis=1,keepdims=True); return z@wc.T
    rep(f'whitened-cos a={a}',wcos(qV),wcos(qT))
