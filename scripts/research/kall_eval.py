import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
o=pickle.load(open('/work/qres/kall.pkl','rb')); V,T=o['V'],o['T']; gV,gT=V['gold'],T['gold']
def frontier(pred,conf,gold,rec=0.85):
    t=np.quantile(conf[gold<0],rec); return metrics(pred,conf,t,gold)[0]
for obj in ['balanced',0.9]:
  print('objective',obj)
  for name,lam,base in [('centroid',0,'cent'),('cent_nt',0,'cent_nt')]+[(f'cent+{l}bag',l,'cent') for l in [0.5,1,1.5]]+[(f'cent_nt+{l}bag',l,'cent_nt') for l in [0.25,0.5,1,1.5]]:
    sv=V[base]+lam*V['bag']; st=T[base]+lam*T['bag']
    t,v=calibrate(sv.argmax(1),sv.max(1),gV)
    report(f'  K=all {name} (valbal {v:.4f})',sv.argmax(1),sv.max(1),gV,st.argmax(1),st.max(1),gT,obj)
    if obj=='balanced': print(f'     diag test acc at test recall .85: {frontier(st.argmax(1),st.max(1),gT):.3f}')
