import numpy as np, os
D='/work/qdump'
def load(split):
    sent=np.load(f'{D}/{split}_sent.npy'); tok=np.load(f'{D}/{split}_tok.npy',mmap_mode='r')
    ids=np.load(f'{D}/{split}_ids.npy'); off=np.load(f'{D}/{split}_off.npy')
    labels=open(f'{D}/{split}_labels.txt').read().split('\n')[:-1]
    return dict(sent=sent,tok=tok,ids=ids,off=off,labels=labels)

def strip(d):
    """token rows excluding CLS/SEP, L2-normalised; returns (T', 384), seg offsets, ids"""
    keep=(d['ids']!=101)&(d['ids']!=102)
    tok=np.asarray(d['tok'])[keep]
    tok=tok/np.linalg.norm(tok,axis=1,keepdims=True)
    # new offsets
    cs=np.concatenate([[0],np.cumsum(keep)])
    off=cs[d['off']]
    return tok.astype(np.float32), off, d['ids'][keep]

def exemplar_index(train_labels,k):
    intents=sorted(set(train_labels))
    r={t:i for i,t in enumerate(intents)}
    cnt={}; idx=[]
    for i,l in enumerate(train_labels):
        c=cnt.get(l,0)
        if k is None or c<k: idx.append(i); cnt[l]=c+1
    idx=np.array(idx); return intents, idx, np.array([r[train_labels[i]] for i in idx])

def subset(d,idx):
    """sub-select texts idx from a loaded split incl. tokens"""
    off=d['off']; rows=np.concatenate([np.arange(off[i],off[i+1]) for i in idx])
    lens=off[idx+1]-off[idx]
    return dict(sent=d['sent'][idx],tok=np.asarray(d['tok'])[rows],ids=d['ids'][rows],
                off=np.concatenate([[0],np.cumsum(lens)]),labels=[d['labels'][i] for i in idx])

def metrics(pred,conf,thr,gold):
    """gold: route idx or -1 oos. pred route idx; routed if conf>=thr"""
    routed=conf>=thr
    ins=gold>=0
    acc=np.mean((pred[ins]==gold[ins])&routed[ins])
    rec=np.mean(~routed[~ins])
    unr=~routed
    prec=np.sum(unr&~ins)/max(1,np.sum(unr))
    return acc,rec,prec

def calibrate(pred,conf,gold,obj='balanced'):
    cands=np.unique(conf)
    best=None
    # vectorised sweep
    order=np.argsort(conf)
    best_v=-1;best_t=None
    for t in np.quantile(conf,np.linspace(0,1,2001)):
        a,r,p=metrics(pred,conf,t,gold)
        v=(a+r)/2 if obj=='balanced' else (a if r>=obj else -1)
        if v>best_v: best_v=v;best_t=t
    return best_t,best_v

def report(name,pv,cv,gv,pt,ct,gt,obj='balanced'):
    t,v=calibrate(pv,cv,gv,obj)
    a,r,p=metrics(pt,ct,t,gt)
    top=np.mean(pt[gt>=0]==gt[gt>=0]); topv=np.mean(pv[gv>=0]==gv[gv>=0])
    va,vr,_=metrics(pv,cv,t,gv)
    print(f'{name:55s} top v/t {topv:.3f}/{top:.3f} | val {va:.3f}/{vr:.3f} | test acc {a:.3f} rec {r:.3f} prec {p:.3f}',flush=True)
    return a,r,p,top
