import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp7.py').read().split("rep('centroid'")[0])
exec(open(__import__('os').path.dirname(__file__)+'/exp5.py').read().split("pE,pV,pT=pools2")[0].split("train=load")[0])
def concat(a,b):
    return dict(sent=np.vstack([a['sent'],b['sent']]),tok=np.vstack([np.asarray(a['tok']),np.asarray(b['tok'])]),
        ids=np.concatenate([a['ids'],b['ids']]),off=np.concatenate([a['off'],b['off'][1:]+a['off'][-1]]),labels=a['labels']+b['labels'])
def nt(d):
    tok=np.asarray(d['tok']); ids=d['ids']; off=d['off']
    inner=((ids!=101)&(ids!=102)).astype(np.float32)[:,None]
    tn=tok/np.linalg.norm(tok,axis=1,keepdims=True)
    o=np.add.reduceat(tn*inner,off[:-1]); return o/np.linalg.norm(o,axis=1,keepdims=True)
O=load('oos_train'); oN=nt(O)
qV=nt(concat(load('val'),load('oos_val'))); qT=nt(concat(load('test'),load('oos_test')))
sv=S['nt_inner'][0]+0.5*fV['bag']; st=S['nt_inner'][1]+0.5*fT['bag']
base_v=sv.max(1); base_t=st.max(1)
oc=oN.mean(0); oc/=np.linalg.norm(oc)
for kind in ['centroid','nn1','nn3','nn10']:
    def osc(q):
        c=q@oN.T
        if kind=='centroid': return q@oc
        k=int(kind[2:]); return np.sort(c,1)[:,-k:].mean(1)
    ov,ot=osc(qV),osc(qT)
    best=None
    for b in [0.1,0.2,0.3,0.5,0.75,1.0]:
        t,v=calibrate(sv.argmax(1),base_v-b*ov,gV)
        if best is None or v>best[0]: best=(v,b)
    b=best[1]
    rep(f'[oos_train] cent_nt+0.5bag, conf=max - {b}*oos_{kind} (valbal {best[0]:.4f})',sv,st,base_v-b*ov,base_t-b*ot)
