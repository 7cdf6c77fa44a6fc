import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp4.py').read().split("pE,pV,pT=pools")[0])
def pools2(d):
    tok=np.asarray(d['tok']); ids=d['ids']; off=d['off']; out={}
    inner=((ids!=101)&(ids!=102)).astype(np.float32)[:,None]
    tn=tok/np.linalg.norm(tok,axis=1,keepdims=True)
    out['nt_inner']=np.add.reduceat(tn*inner,off[:-1])
    out['nt_all']=np.add.reduceat(tn,off[:-1])
    w=idf[ids][:,None]*inner
    out['nt_idf']=np.add.reduceat(tn*w,off[:-1])
    w2=np.sqrt(idf[ids])[:,None]*inner
    out['nt_sqrtidf']=np.add.reduceat(tn*w2,off[:-1])
    for k in out: out[k]=out[k]/np.linalg.norm(out[k],axis=1,keepdims=True)
    return out
pE,pV,pT=pools2(ex),pools2(QV),pools2(QT)
def cents(pE,pQ):
    C=np.zeros((R,384)); np.add.at(C,ex_route,pE); C/=np.linalg.norm(C,axis=1,keepdims=True); return pQ@C.T
S=pickle.load(open('/work/qres/k10_pools.pkl','rb'))
for k in pE:
    S[k]=(cents(pE[k],pV[k]),cents(pE[k],pT[k]))
    report(f'centroid pooling={k}',S[k][0].argmax(1),S[k][0].max(1),gV,S[k][1].argmax(1),S[k][1].max(1),gT)
    # 1-NN in that space
    cv=pV[k]@pE[k].T; ct=pT[k]@pE[k].T
    S[k+'_cos']=(cv,ct)
pickle.dump(S,open('/work/qres/k10_pools.pkl','wb'))
for base in ['nt_inner','nt_sqrtidf']:
  for lam in [0.5,1,1.5,2]:
    sv=S[base][0]+lam*fV['bag']; st=S[base][1]+lam*fT['bag']
    t,v=calibrate(sv.argmax(1),sv.max(1),gV)
    report(f'cent[{base}] + {lam}*bag  valbal {v:.4f}',sv.argmax(1),sv.max(1),gV,st.argmax(1),st.max(1),gT)
