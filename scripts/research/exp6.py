import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp1.py').read().split('def feats')[0])
fV,gV,fT,gT=pickle.load(open('/work/qres/k10_feats.pkl','rb'))
S=pickle.load(open('/work/qres/k10_pools.pkl','rb'))
def ex2route(X,how):
    X=X[:,order].reshape(len(X),R,10)
    if how=='max': return X.max(2)
    if how=='mean': return X.mean(2)
    n=int(how[3:]); return np.sort(X,2)[:,:,-n:].mean(2)
def F(f,s,i):
    return {'cent':f['cent'],'cent_nt':s['nt_inner'][i],'bag':f['bag'],'bag_idf':f['bag_idf'],
      'q2e_top3':ex2route(f['q2e'],'top3'),'q2e_mean':ex2route(f['q2e'],'mean'),'e2q_top3':ex2route(f['e2q'],'top3'),
      'nn1':ex2route(f['cos'],'max'),'nn3':ex2route(f['cos'],'top3'),'nt_nn1':ex2route(s['nt_inner_cos'][i],'max'),'nt_nn3':ex2route(s['nt_inner_cos'][i],'top3')}
FV=F(fV,S,0); FT=F(fT,S,1); names=list(FV)
XV=np.stack([FV[k] for k in names],2); XT=np.stack([FT[k] for k in names],2)
def fit(X,g,l2=1e-3,iters=300,lr=0.5):
    w=np.zeros(X.shape[2]); w[names.index('cent')]=20.0
    m=np.zeros_like(w); v=np.zeros_like(w)
    for it in range(iters):
        Z=X@w; Z-=Z.max(1,keepdims=True); P=np.exp(Z); P/=P.sum(1,keepdims=True)
        grad=-(X[np.arange(len(g)),g]-np.einsum('qr,qrf->qf',P,X)).mean(0)+l2*w
        m=0.9*m+0.1*grad; v=0.999*v+0.001*grad**2
        w-=lr*m/(np.sqrt(v)+1e-8)
    return w
ins=gV>=0
# 2-fold on val in-scope to check generalisation of top-route accuracy
rng=np.random.default_rng(0); iv=np.where(ins)[0]; perm=rng.permutation(iv); h=len(perm)//2
for a,b in [(perm[:h],perm[h:]),(perm[h:],perm[:h])]:
    w=fit(XV[a],gV[a]); print('fold acc',np.mean((XV[b]@w).argmax(1)==gV[b]), 'cent',np.mean(FV['cent'][b].argmax(1)==gV[b]))
w=fit(XV[ins],gV[ins])
print(dict(zip(names,np.round(w,2))))
SV=XV@w; ST=XT@w
report('learned combo (val-fitted), conf=max',SV.argmax(1),SV.max(1),gV,ST.argmax(1),ST.max(1),gT)
# sparse: cent_nt+bag+nn1 only
for sub in [['cent_nt','bag'],['cent','cent_nt','bag'],['cent_nt','bag','nt_nn1'],['cent_nt','bag','q2e_top3','nt_nn3']]:
    ix=[names.index(k) for k in sub]
    w=fit(XV[ins][:,:,ix],gV[ins]) if 'cent' in sub else None
    if w is None:
        Xs=XV[:,:,ix]; w0=np.zeros(len(ix)); 
        names_b=names; names=sub+['cent']; 
        Xa=np.concatenate([Xs,FV['cent'][:,:,None]*0],2); w=fit(Xa[ins],gV[ins])[:len(ix)]; names=names_b
    SV=XV[:,:,ix]@w; ST=XT[:,:,ix]@w
    report(f'learned {sub} {np.round(w,1)}',SV.argmax(1),SV.max(1),gV,ST.argmax(1),ST.max(1),gT)
