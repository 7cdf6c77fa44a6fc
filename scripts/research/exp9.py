import numpy as np, sys, pickle
sys.path.insert(0,__import__('os').path.dirname(__file__)); from common import *
exec(open(__import__('os').path.dirname(__file__)+'/exp7.py').read().split("rep('centroid'")[0])
cands={'centroid':(fV['cent'],fT['cent']),'hybrid-ish cent+top... (skip)':None,
 'cent_nt':(S['nt_inner'][0],S['nt_inner'][1]),'cent+1.5bag':(fV['cent']+1.5*fV['bag'],fT['cent']+1.5*fT['bag']),
 'cent_nt+0.5bag':(S['nt_inner'][0]+0.5*fV['bag'],S['nt_inner'][1]+0.5*fT['bag'])}
for obj in ['balanced',0.85,0.9,0.95]:
    print('objective',obj)
    for k,v in cands.items():
        if v is None: continue
        sv,st=v; report(f'  {k}',sv.argmax(1),sv.max(1),gV,st.argmax(1),st.max(1),gT,obj)
