import numpy as np, sys, time
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
def concat(a,b):
    return dict(sent=np.vstack([a['sent'],b['sent']]),tok=np.vstack([np.asarray(a['tok']),np.asarray(b['tok'])]),
        ids=np.concatenate([a['ids'],b['ids']]),off=np.concatenate([a['off'],b['off'][1:]+a['off'][-1]]),labels=a['labels']+b['labels'])
train=load('train')
intents,idx,ex_route=exemplar_index(train['labels'],10)
ex=subset(train,idx)
etok,eoff,eids=strip(ex)
np.save('/work/qres/k10_ex_route.npy',ex_route)
for name,(a,b) in {'V':('val','oos_val'),'T':('test','oos_test')}.items():
    q=concat(load(a),load(b))
    qtok,qoff,qids=strip(q)
    t0=time.time()
    QE=np.empty((len(qtok),len(eoff)-1),np.float32)
    EQ=np.empty((len(qoff)-1,len(etok)),np.float32)
    # chunk over queries
    nq=len(qoff)-1; step=200
    for s in range(0,nq,step):
        e=min(nq,s+step); r0,r1=qoff[s],qoff[e]
        S=qtok[r0:r1]@etok.T
        QE[r0:r1]=np.maximum.reduceat(S,eoff[:-1],axis=1)
        EQ[s:e]=np.maximum.reduceat(S,qoff[s:e]-r0,axis=0)
    print(name,time.time()-t0,flush=True)
    np.save(f'/work/qres/k10_{name}_QE.npy',QE); np.save(f'/work/qres/k10_{name}_EQ.npy',EQ)
    np.save(f'/work/qres/k10_{name}_qoff.npy',qoff); np.save(f'/work/qres/k10_{name}_qids.npy',qids)
    gold=np.array([intents.index(l) if l!='oos' else -1 for l in q['labels']])
    np.save(f'/work/qres/k10_{name}_gold.npy',gold); np.save(f'/work/qres/k10_{name}_sent.npy',q['sent'])
np.save('/work/qres/k10_eoff.npy',eoff); np.save('/work/qres/k10_eids.npy',eids); np.save('/work/qres/k10_ex_sent.npy',ex['sent'])
