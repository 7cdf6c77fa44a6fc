# Does fine-tuning the encoder on the K exemplars (cross-entropy through a cosine classifier initialised at
# the route centroids) lift CLINC150 past the frozen-encoder frontier? Thresholds on val + oos_val only.
# Usage: python finetune.py K LAYERS EPOCHS LR [SCALE] [nodrop|drop] [MARGIN] [WORD_DROPOUT]   (LAYERS = top layers trained)
import json, sys, time, numpy as np, torch
from sentence_transformers import SentenceTransformer
sys.path.insert(0, __import__('os').path.dirname(__file__)); from common import metrics, calibrate
torch.manual_seed(0); torch.set_num_threads(2)
K = int(sys.argv[1]); LAYERS = int(sys.argv[2]); EPOCHS = int(sys.argv[3]); LR = float(sys.argv[4])
SCALE = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
NODROP = len(sys.argv) > 6 and sys.argv[6] == "nodrop"
MARGIN = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
WDROP = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0
import random; random.seed(0)
def wdrop(t):
    w = t.split(); k = [x for x in w if random.random() >= WDROP]
    return ' '.join(k) if k else t
d = json.load(open('/work/shared/data/clinc150/data_full.json'))
intents = sorted({l for _, l in d['train']}); rid = {t: i for i, t in enumerate(intents)}
cnt = {}; ex = []
for t, l in d['train']:
    if cnt.get(l, 0) < K: ex.append((t, rid[l])); cnt[l] = cnt.get(l, 0) + 1
def split(a, b): return [t for t, _ in d[a] + d[b]], np.array([rid[l] for _, l in d[a]] + [-1] * len(d[b]))
vt, gV = split('val', 'oos_val'); tt, gT = split('test', 'oos_test')
m = SentenceTransformer('/work/main/models/all-MiniLM-L6-v2', device='cpu')
bert = m[0].auto_model
def embed(texts, train=False):
    f = m.tokenize(texts)
    out = bert(input_ids=f['input_ids'], attention_mask=f['attention_mask'], token_type_ids=f.get('token_type_ids'))
    h = out.last_hidden_state; msk = f['attention_mask'].unsqueeze(-1).float()
    e = (h * msk).sum(1) / msk.sum(1)
    return torch.nn.functional.normalize(e, dim=-1)
def enc_all(texts):
    bert.eval(); outs = []
    with torch.no_grad():
        for i in range(0, len(texts), 128): outs.append(embed(texts[i:i + 128]))
    return torch.cat(outs).numpy()
def evaluate(tag):
    X = enc_all([t for t, _ in ex]); y = np.array([r for _, r in ex])
    mu = np.zeros((150, X.shape[1])); np.add.at(mu, y, X); mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    V = enc_all(vt); T = enc_all(tt)
    for name, SV, ST in [('centroid', V @ mu.T, T @ mu.T)]:
        pv, pt, cv, ct = SV.argmax(1), ST.argmax(1), SV.max(1), ST.max(1)
        top = np.mean(pt[gT >= 0] == gT[gT >= 0])
        res = []
        for obj in ['balanced', 0.9]:
            t, v = calibrate(pv, cv, gV, obj); a, r, p = metrics(pt, ct, t, gT); res.append(f'{obj}: {a:.3f}/{r:.3f}')
        o = ct[gT < 0]; fr = metrics(pt, ct, np.quantile(o, 0.85), gT)[0]
        print(f'{tag} {name}: top {top:.3f} | ' + ' | '.join(res) + f' | diag frontier@.85 {fr:.3f}', flush=True)
    return mu
mu = evaluate('frozen') if EPOCHS < 0 else None
if mu is None:
    X = enc_all([t for t, _ in ex]); y = np.array([r for _, r in ex])
    mu = np.zeros((150, X.shape[1])); np.add.at(mu, y, X); mu /= np.linalg.norm(mu, axis=1, keepdims=True)
# Freeze all but the top LAYERS transformer layers.
for p in bert.parameters(): p.requires_grad = False
layers = bert.encoder.layer
for l in layers[len(layers) - LAYERS:]:
    for p in l.parameters(): p.requires_grad = True
W = torch.nn.Parameter(torch.tensor(mu, dtype=torch.float32))
params = [p for p in bert.parameters() if p.requires_grad]
opt = torch.optim.AdamW([{'params': params, 'lr': LR}, {'params': [W], 'lr': 1e-2}], weight_decay=0.01)
texts = [t for t, _ in ex]; ys = torch.tensor([r for _, r in ex])
for ep in range(EPOCHS):
    (bert.eval() if NODROP else bert.train()); perm = torch.randperm(len(texts)); t0 = time.time(); tot = 0
    for i in range(0, len(texts), 32):
        b = perm[i:i + 32]
        e = embed([wdrop(texts[j]) if WDROP > 0 else texts[j] for j in b], True)
        cos = e @ torch.nn.functional.normalize(W, dim=-1).T
        logits = SCALE * (cos - MARGIN * torch.nn.functional.one_hot(ys[b], 150))
        loss = torch.nn.functional.cross_entropy(logits, ys[b])
        opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item() * len(b)
    print(f'epoch {ep} loss {tot / len(texts):.3f} {time.time() - t0:.1f}s', flush=True)
    if ep == EPOCHS - 1: evaluate(f'ep{ep} m={MARGIN} s={SCALE}')
