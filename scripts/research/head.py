# Route head: multinomial logistic regression on the exemplars' token-pooled vectors, added to the late
# score as (cent_nt + w bag + h z/B) / (1 + w + h), z the logits and B = max_r |w_r| + |b_r|.
# Usage: python3 head.py all   (or 10). Needs /work/qdump (see README) and /work/qres/{kall.pkl,k10_feats.pkl}.
import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
K=None if sys.argv[1]=='all' else int(sys.argv[1])
def nt(d):
    tok=np.asarray(d['tok']); ids=d['ids']; off=d['off']
    inner=((ids!=101)&(ids!=102)).astype(np.float32)[:,None]
    tn=tok/np.linalg.norm(tok,axis=1,keepdims=True)
    o=np.add.reduceat(tn*inner,off[:-1]); return o/np.linalg.norm(o,axis=1,keepdims=True)
train=load('train')
intents,idx,ex_route=exemplar_index(train['labels'],K)
Xn=nt(train)[idx].astype(np.float64)
def qs(a,b):
    A=load(a);B=load(b); return np.vstack([nt(A),nt(B)]).astype(np.float64)
qVn=qs('val','oos_val'); qTn=qs('test','oos_test')
R=150
cnt=np.bincount(ex_route,minlength=R); mu=np.zeros((R,384)); np.add.at(mu,ex_route,Xn); mu/=np.linalg.norm(mu,axis=1,keepdims=True)
if K is None:
    kall=pickle.load(open('/work/qres/kall.pkl','rb')); bV,bT=kall['V']['bag'],kall['T']['bag']; gV=kall['V']['gold']; gT=kall['T']['gold']; w=1.25
else:
    fV,gV,fT,gT=pickle.load(open('/work/qres/k10_feats.pkl','rb')); bV,bT=fV['bag'],fT['bag']; w=0.5
LV=(qVn@mu.T+w*bV)/(1+w); LT=(qTn@mu.T+w*bT)/(1+w)
def frontier(pred,conf,gold,rec=0.85):
    o=conf[gold<0]; t=np.quantile(o,rec); return metrics(pred,conf,t,gold)[0]
def rep(name,SV,ST):
    pv,pt=SV.argmax(1),ST.argmax(1); cv,ct=SV.max(1),ST.max(1)
    for obj in ['balanced',0.9,0.95]:
        report(f'{name} [{obj}]',pv,cv,gV,pt,ct,gT,obj)
    print(f'    diag: test acc at test-recall .85 = {frontier(pt,ct,gT):.3f}',flush=True)
Y=np.zeros((len(ex_route),R)); Y[np.arange(len(ex_route)),ex_route]=1
def train_lr(X,lam,iters,lr):
    W=np.zeros((X.shape[1],R)); b=np.zeros(R); mW=np.zeros_like(W); vW=np.zeros_like(W); mb=np.zeros(R); vb=np.zeros(R)
    for t in range(1,iters+1):
        Z=X@W+b; Z-=Z.max(1,keepdims=True); P=np.exp(Z); P/=P.sum(1,keepdims=True)
        G=(P-Y)/len(X); gW=X.T@G+lam*W; gb=G.sum(0)
        for (p,g,m,v) in ((W,gW,mW,vW),(b,gb,mb,vb)):
            m*=0.9; m+=0.1*g; v*=0.999; v+=0.001*g*g
            p-=lr*(m/(1-0.9**t))/(np.sqrt(v/(1-0.999**t))+1e-8)
    return W,b
cV=qVn@mu.T; cT=qTn@mu.T
def rep2(name,SV,ST):
    pv,pt=SV.argmax(1),ST.argmax(1); cv,ct=SV.max(1),ST.max(1); out=[]
    for obj in ['balanced',0.9,0.95]:
        t,v=calibrate(pv,cv,gV,obj); out.append((obj,v,metrics(pt,ct,t,gT)[:2]))
    return out,frontier(pt,ct,gT)
for lam,iters,lr in [(1e-5,400,0.05),(1e-5,100,0.2),(1e-5,50,0.4),(0,200,0.05)]:
    W,b=train_lr(Xn,lam,iters,lr); B=(np.linalg.norm(W,axis=0)+np.abs(b)).max()
    zV=(qVn@W+b)/B; zT=(qTn@W+b)/B
    print(f'lam={lam} it={iters} lr={lr} B={B:.2f} top1 test {np.mean(zT.argmax(1)[gT>=0]==gT[gT>=0]):.3f}',flush=True)
    best={}
    for h in [0.5,1,2,3,4,6]:
        SV=(cV+w*bV+h*zV)/(1+w+h); ST=(cT+w*bT+h*zT)/(1+w+h)
        out,fr=rep2('',SV,ST)
        print(f'  h={h} frontier {fr:.3f} ',' '.join(f'{o}: val {v:.3f} test {a:.3f}/{r:.3f}' for o,v,(a,r) in out),flush=True)
