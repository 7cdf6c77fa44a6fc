import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp1.py').read().split('def feats')[0])
fV,gV,fT,gT=pickle.load(open('/work/qres/k10_feats.pkl','rb'))
train=load('train'); _,idx,_=exemplar_index(train['labels'],10); ex=subset(train,idx)
def concat(a,b):
    return dict(sent=np.vstack([a['sent'],b['sent']]),tok=np.vstack([np.asarray(a['tok']),np.asarray(b['tok'])]),
        ids=np.concatenate([a['ids'],b['ids']]),off=np.concatenate([a['off'],b['off'][1:]+a['off'][-1]]),labels=a['labels']+b['labels'])
QV=concat(load('val'),load('oos_val')); QT=concat(load('test'),load('oos_test'))
def pools(d):
    tok=np.asarray(d['tok']); ids=d['ids']; off=d['off']; out={}
    inner=((ids!=101)&(ids!=102)).astype(np.float32)[:,None]
    w=idf[ids][:,None]*inner
    out['mean']=np.add.reduceat(tok,off[:-1])/np.diff(off)[:,None]
    out['mean_inner']=np.add.reduceat(tok*inner,off[:-1])/np.add.reduceat(inner,off[:-1])
    out['idf']=np.add.reduceat(tok*w,off[:-1])/np.add.reduceat(w,off[:-1])
    out['max']=np.maximum.reduceat(tok,off[:-1])
    tn=tok/np.linalg.norm(tok,axis=1,keepdims=True)
    out['mean_normtok']=np.add.reduceat(tn*inner,off[:-1])
    out['cls']=tok[off[:-1]]
    for k in out: out[k]=out[k]/np.linalg.norm(out[k],axis=1,keepdims=True)
    return out
pE,pV,pT=pools(ex),pools(QV),pools(QT)
print('check mean==sent',np.abs(pE['mean']-ex['sent']).max())
def cents(pE,pQ):
    C=np.zeros((R,384)); np.add.at(C,ex_route,pE); C/=np.linalg.norm(C,axis=1,keepdims=True); return pQ@C.T
S={}
for k in pE:
    S[k]=(cents(pE[k],pV[k]),cents(pE[k],pT[k]))
    report(f'centroid pooling={k}',S[k][0].argmax(1),S[k][0].max(1),gV,S[k][1].argmax(1),S[k][1].max(1),gT)
pickle.dump(S,open('/work/qres/k10_pools.pkl','wb'))
for k in ['idf','max','mean_inner','cls']:
    for lam in [0.3,0.5,1]:
        sv=S['mean'][0]+lam*S[k][0]; st=S['mean'][1]+lam*S[k][1]
        report(f'cent + {lam}*cent[{k}]',sv.argmax(1),sv.max(1),gV,st.argmax(1),st.max(1),gT)
