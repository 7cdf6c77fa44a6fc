import numpy as np, sys
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
P='/work/qres/k10_'
ex_route=np.load(P+'ex_route.npy'); eoff=np.load(P+'eoff.npy'); eids=np.load(P+'eids.npy'); exs=np.load(P+'ex_sent.npy')
R=150
# idf over exemplars (doc = exemplar)
nE=len(eoff)-1
df=np.zeros(40000)
for i in range(nE): df[np.unique(eids[eoff[i]:eoff[i+1]])]+=1
idf=np.log((nE+1)/(df+1))+1
C=np.zeros((R,384)); np.add.at(C,ex_route,exs); C/=np.linalg.norm(C,axis=1,keepdims=True)
order=np.argsort(ex_route,kind='stable'); assert (ex_route[order]==np.repeat(np.arange(R),10)).all()
def feats(name):
    QE=np.load(P+name+'_QE.npy'); EQ=np.load(P+name+'_EQ.npy'); qoff=np.load(P+name+'_qoff.npy'); qids=np.load(P+name+'_qids.npy')
    sent=np.load(P+name+'_sent.npy'); gold=np.load(P+name+'_gold.npy')
    lens=np.diff(qoff)
    f={}
    f['cent']=sent@C.T
    f['cos']=sent@exs.T
    f['q2e']=np.add.reduceat(QE,qoff[:-1],axis=0)/lens[:,None]
    w=idf[qids][:,None]
    f['q2e_idf']=np.add.reduceat(QE*w,qoff[:-1],axis=0)/np.add.reduceat(w,qoff[:-1],axis=0)
    elens=np.diff(eoff)
    f['e2q']=np.add.reduceat(EQ,eoff[:-1],axis=1)/elens[None]
    we=idf[eids][None]
    f['e2q_idf']=np.add.reduceat(EQ*we,eoff[:-1],axis=1)/np.add.reduceat(we,eoff[:-1],axis=1)
    # route bag: max over the route's exemplars per query token, then mean
    QR=QE[:,order].reshape(len(QE),R,10).max(2)
    f['bag']=np.add.reduceat(QR,qoff[:-1],axis=0)/lens[:,None]
    f['bag_idf']=np.add.reduceat(QR*w,qoff[:-1],axis=0)/np.add.reduceat(w,qoff[:-1],axis=0)
    return f,gold
fV,gV=feats('V'); fT,gT=feats('T')
def ex2route(X,how):
    X=X[:,order].reshape(len(X),R,10)
    if how=='max': return X.max(2)
    if how=='mean': return X.mean(2)
    if how.startswith('top'): n=int(how[3:]); return np.sort(X,2)[:,:,-n:].mean(2)
def run(name,SV,ST):
    return report(name,SV.argmax(1),SV.max(1),gV,ST.argmax(1),ST.max(1),gT)
run('centroid',fV['cent'],fT['cent'])
run('1-NN sentence',ex2route(fV['cos'],'max'),ex2route(fT['cos'],'max'))
for k in ['q2e','q2e_idf','e2q','e2q_idf']:
    for how in ['max','top3','mean']:
        run(f'{k} {how}',ex2route(fV[k],how),ex2route(fT[k],how))
for k in ['bag','bag_idf']: run(k,fV[k],fT[k])
# symmetric
for how in ['max','top3','mean']:
    sv=(fV['q2e_idf']+fV['e2q_idf'])/2; st=(fT['q2e_idf']+fT['e2q_idf'])/2
    run(f'sym_idf {how}',ex2route(sv,how),ex2route(st,how))
import pickle; pickle.dump((fV,gV,fT,gT),open('/work/qres/k10_feats.pkl','wb'))
