#!/usr/bin/env python3
"""ONNX Runtime peer benchmark for all-MiniLM-L6-v2, on the machine semroute runs on.

What it does, in order:

1. Builds the ONNX graph of the sentence encoder by hand (``onnx.helper``) from ``model.safetensors``:
   BERT embeddings (word + position + token type, LayerNorm), 6 encoder layers (Q/K/V projections, scaled
   dot-product attention with an additive mask made from ``attention_mask``, softmax, output projection +
   residual + LayerNorm, intermediate projection + exact erf GELU, output projection + residual +
   LayerNorm), then mean pooling over ``attention_mask`` and L2 normalisation. No torch, no optimum.
   The node layout follows what a PyTorch export of transformers' eager BertModel looks like, so that
   ONNX Runtime's transformer optimizer recognises it and can fuse it.
2. Derives the other variants from it: ``f32-fused`` (onnxruntime.transformers.optimizer, model_type
   bert, 12 heads, hidden 384), ``int8`` (quantize_dynamic, per-channel QInt8 weights) and
   ``int8-fused`` (the same quantisation of the fused graph). A variant that fails to build is reported
   and skipped; the others still run.
3. Checks every variant against the sentence-transformers reference vectors
   (``reference/minilm_embeddings.json``): each text alone and all twelve in one padded batch.
   F32 variants must reach cosine > 0.9999 (the script exits non-zero otherwise); INT8 reports its worst.
4. Times, per variant: one query end to end (tokenise + run + pooling, which is inside the graph), and
   batch throughput over the CLINC150 test sentences (sorted by length as sentence-transformers does,
   padded to the longest in each batch, tokenisation included), bounded in time.

The .onnx files are written under --work-dir (default /tmp/semroute-peers-onnx), never in the repository,
and rebuilt when missing or when the weights change. See scripts/peers/README.md for the exact command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tokenizers
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"

# Same text as benches/embed.rs and the PEERS.md protocol (13 tokens with [CLS]/[SEP]).
QUERY = "can you tell me how to say fly in italian please"

OPSET = 17
# Bump when the graph builder changes, so cached .onnx files are rebuilt.
BUILD_VERSION = 1

VARIANTS = ("f32", "f32-fused", "int8", "int8-fused")
F32_MIN_COSINE = 0.9999


# --------------------------------------------------------------------------------------------------------
# Graph construction
# --------------------------------------------------------------------------------------------------------


class GraphBuilder:
    """Collects nodes and initializers; every node gets a unique readable name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        assert name not in self._names, name
        self._names.add(name)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        """Adds one single-output node; its output tensor carries the node's name."""
        assert name not in self._names, name
        self._names.add(name)
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def build_f32_model(model_dir: Path) -> onnx.ModelProto:
    cfg = json.loads((model_dir / "config.json").read_text())
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(cfg["layer_norm_eps"])
    assert cfg.get("hidden_act") == "gelu", "this builder implements the exact (erf) GELU only"
    assert cfg.get("position_embedding_type", "absolute") == "absolute"

    w = load_file(str(model_dir / "model.safetensors"))
    # Some checkpoints prefix the names with "bert."; all-MiniLM-L6-v2 does not.
    w = {k.removeprefix("bert."): v for k, v in w.items()}
    f32 = lambda k: w[k].astype(np.float32)  # noqa: E731
    # nn.Linear stores [out, in]; MatMul wants [in, out].
    lin_t = lambda k: np.ascontiguousarray(f32(k).T)  # noqa: E731

    g = GraphBuilder()
    ids, mask = "input_ids", "attention_mask"

    # ---- embeddings --------------------------------------------------------------------------------
    word = g.op("Gather", [g.const("emb.word", f32("embeddings.word_embeddings.weight")), ids], "emb.word_gather")
    # token_type_ids are all zero for a single sentence; computed in the graph so the inputs stay two.
    ids_shape = g.op("Shape", [ids], "emb.ids_shape")
    type_ids = g.op(
        "ConstantOfShape",
        [ids_shape],
        "emb.type_ids",
        value=numpy_helper.from_array(np.zeros(1, np.int64), "zero"),
    )
    ttype = g.op(
        "Gather", [g.const("emb.type", f32("embeddings.token_type_embeddings.weight")), type_ids], "emb.type_gather"
    )
    # position ids = position_ids[:, :seq_len] (the layout a PyTorch export gives).
    seq_len = g.op("Gather", [ids_shape, g.const("c.one_scalar", 1, np.int64)], "emb.seq_len")
    seq_len1 = g.op("Unsqueeze", [seq_len, g.const("c.axes0", [0], np.int64)], "emb.seq_len_1d")
    max_pos = cfg["max_position_embeddings"]
    pos_ids = g.op(
        "Slice",
        [
            g.const("emb.position_ids", np.arange(max_pos, dtype=np.int64)[None, :]),
            g.const("c.zero_1d", [0], np.int64),
            seq_len1,
            g.const("c.axes1", [1], np.int64),
            g.const("c.one_1d", [1], np.int64),
        ],
        "emb.pos_ids",
    )
    pos = g.op(
        "Gather", [g.const("emb.pos", f32("embeddings.position_embeddings.weight")), pos_ids], "emb.pos_gather"
    )
    summed = g.op("Add", [g.op("Add", [word, ttype], "emb.add_type"), pos], "emb.add_pos")
    h = g.op(
        "LayerNormalization",
        [summed, g.const("emb.ln.g", f32("embeddings.LayerNorm.weight")), g.const("emb.ln.b", f32("embeddings.LayerNorm.bias"))],
        "emb.ln",
        axis=-1,
        epsilon=eps,
    )

    # ---- additive attention mask: (1 - mask[:, None, None, :]) * float32.min --------------------------
    m4 = g.op("Unsqueeze", [g.op("Unsqueeze", [mask, g.const("c.axes1b", [1], np.int64)], "mask.u1"),
                            g.const("c.axes2", [2], np.int64)], "mask.u2")
    m4f = g.op("Cast", [m4], "mask.cast", to=TensorProto.FLOAT)
    inv = g.op("Sub", [g.const("c.one_f", np.float32(1.0)), m4f], "mask.inv")
    add_mask = g.op("Mul", [inv, g.const("c.neg_big", np.finfo(np.float32).min)], "mask.additive")

    split_shape = g.const("c.split_heads", [0, 0, heads, head_dim], np.int64)
    merge_shape = g.const("c.merge_heads", [0, 0, hidden], np.int64)
    scale = g.const("c.sqrt_head_dim", np.float32(math.sqrt(head_dim)))
    sqrt2 = g.const("c.sqrt2", np.float32(math.sqrt(2.0)))
    one = g.const("c.gelu_one", np.float32(1.0))
    half = g.const("c.gelu_half", np.float32(0.5))

    def dense(x: str, key: str, name: str) -> str:
        y = g.op("MatMul", [x, g.const(f"{name}.w", lin_t(f"{key}.weight"))], f"{name}.matmul")
        return g.op("Add", [y, g.const(f"{name}.b", f32(f"{key}.bias"))], f"{name}.bias")

    def layer_norm(x: str, key: str, name: str) -> str:
        return g.op(
            "LayerNormalization",
            [x, g.const(f"{name}.g", f32(f"{key}.weight")), g.const(f"{name}.b", f32(f"{key}.bias"))],
            name,
            axis=-1,
            epsilon=eps,
        )

    # ---- encoder layers ------------------------------------------------------------------------------
    for i in range(cfg["num_hidden_layers"]):
        p, n = f"encoder.layer.{i}", f"l{i}"

        def heads_of(x: str, perm: list[int], tag: str) -> str:
            r = g.op("Reshape", [x, split_shape], f"{n}.{tag}.split")
            return g.op("Transpose", [r], f"{n}.{tag}.heads", perm=perm)

        q = heads_of(dense(h, f"{p}.attention.self.query", f"{n}.q"), [0, 2, 1, 3], "q")  # [B,H,S,D]
        k_t = heads_of(dense(h, f"{p}.attention.self.key", f"{n}.k"), [0, 2, 3, 1], "k")  # [B,H,D,S]
        v = heads_of(dense(h, f"{p}.attention.self.value", f"{n}.v"), [0, 2, 1, 3], "v")  # [B,H,S,D]
        scores = g.op("Div", [g.op("MatMul", [q, k_t], f"{n}.qk"), scale], f"{n}.qk_scaled")
        probs = g.op("Softmax", [g.op("Add", [scores, add_mask], f"{n}.qk_masked")], f"{n}.softmax", axis=-1)
        ctx = g.op("MatMul", [probs, v], f"{n}.ctx")
        ctx = g.op("Transpose", [ctx], f"{n}.ctx_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_shape], f"{n}.ctx_merge")
        attn = dense(ctx, f"{p}.attention.output.dense", f"{n}.attn_out")
        h = layer_norm(g.op("Add", [attn, h], f"{n}.attn_residual"), f"{p}.attention.output.LayerNorm", f"{n}.attn_ln")

        x = dense(h, f"{p}.intermediate.dense", f"{n}.ffn_in")
        erf = g.op("Erf", [g.op("Div", [x, sqrt2], f"{n}.gelu_div")], f"{n}.gelu_erf")
        gelu = g.op(
            "Mul",
            [g.op("Mul", [x, g.op("Add", [erf, one], f"{n}.gelu_add")], f"{n}.gelu_mul"), half],
            f"{n}.gelu",
        )
        y = dense(gelu, f"{p}.output.dense", f"{n}.ffn_out")
        h = layer_norm(g.op("Add", [y, h], f"{n}.ffn_residual"), f"{p}.output.LayerNorm", f"{n}.ffn_ln")

    # ---- mean pooling over the mask, then L2 normalisation (sentence-transformers' clamps) ------------
    mf = g.op("Unsqueeze", [g.op("Cast", [mask], "pool.mask_f", to=TensorProto.FLOAT), g.const("c.axes2b", [2], np.int64)],
              "pool.mask_3d")
    axis1 = g.const("c.reduce_axis1", [1], np.int64)
    total = g.op("ReduceSum", [g.op("Mul", [h, mf], "pool.masked"), axis1], "pool.sum", keepdims=0)
    count = g.op("ReduceSum", [mf, axis1], "pool.count", keepdims=0)
    count = g.op("Max", [count, g.const("c.eps_count", np.float32(1e-9))], "pool.count_clamped")
    mean = g.op("Div", [total, count], "pool.mean")
    norm = g.op("ReduceL2", [mean], "pool.norm", axes=[1], keepdims=1)
    norm = g.op("Max", [norm, g.const("c.eps_norm", np.float32(1e-12))], "pool.norm_clamped")
    g.op("Div", [mean, norm], "sentence_embedding")

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="semroute-peers")
    model.ir_version = 8  # readable by any ONNX Runtime since 1.10
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------------------


def fingerprint(model_dir: Path) -> str:
    st = (model_dir / "model.safetensors").stat()
    key = f"{BUILD_VERSION}:{st.st_size}:{int(st.st_mtime)}:{ort.__version__}:{onnx.__version__}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def op_histogram(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def quantize(src: Path, dst: Path, fused: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The fused graph carries com.microsoft ops whose output types the quantizer cannot infer; it needs
    # to be told that unknown tensors are float.
    extra = {"DefaultTensorType": TensorProto.FLOAT} if fused else {}
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8, extra_options=extra)


def optimize(src: Path, dst: Path, num_heads: int, hidden: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level=0: the optimizer's Python fusions only. Its optional ONNX Runtime pre-pass (opt_level 1,
    # the default for bert) imports torch just to read a version string; the graph built here has no
    # foldable constants left for that pass anyway, and ONNX Runtime still runs ORT_ENABLE_ALL at load.
    # It warns that the producer is not "pytorch": harmless, the node layout is what it matches on.
    opt = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden, opt_level=0)
    fused = opt.get_fused_operator_statistics()
    if not fused.get("Attention"):
        raise RuntimeError(f"optimizer fused no Attention node (fused ops: {fused})")
    opt.save_model_to_file(str(dst))


def prepare_variants(model_dir: Path, work_dir: Path, wanted: list[str], rebuild: bool) -> dict[str, dict]:
    """Builds (or reuses) the requested .onnx files; returns {variant: {"path": .., "error": ..}}."""
    cfg = json.loads((model_dir / "config.json").read_text())
    out_dir = work_dir / fingerprint(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {v: out_dir / f"minilm-{v}.onnx" for v in VARIANTS}
    needs = {"f32": [], "f32-fused": ["f32"], "int8": ["f32"], "int8-fused": ["f32-fused"]}

    def build(v: str, dst: Path) -> None:
        if v == "f32":
            onnx.save(build_f32_model(model_dir), str(dst))
        elif v == "f32-fused":
            optimize(paths["f32"], dst, cfg["num_attention_heads"], cfg["hidden_size"])
        elif v == "int8":
            quantize(paths["f32"], dst, fused=False)
        elif v == "int8-fused":
            quantize(paths["f32-fused"], dst, fused=True)

    status: dict[str, dict] = {}

    def ensure(v: str) -> bool:
        if v in status:
            return status[v]["error"] is None
        for dep in needs[v]:
            if not ensure(dep):
                status[v] = {"path": None, "error": f"needs {dep}, which failed"}
                return False
        if rebuild or not paths[v].exists():
            t0 = time.perf_counter()
            # Build under a temporary name and rename, so an interrupted build never looks complete.
            tmp = paths[v].with_name(paths[v].stem + ".partial.onnx")
            try:
                build(v, tmp)
                tmp.replace(paths[v])
            except Exception as e:  # a variant that cannot be built is reported, not fatal
                status[v] = {"path": None, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
                print(f"[build] {v}: FAILED: {status[v]['error']}", file=sys.stderr)
                return False
            finally:
                tmp.unlink(missing_ok=True)
            print(f"[build] {v}: {paths[v]} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        status[v] = {"path": str(paths[v]), "error": None, "ops": op_histogram(paths[v])}
        return True

    for v in wanted:
        ensure(v)
    return {v: status[v] for v in wanted}


# --------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------


class Encoder:
    """Tokeniser + InferenceSession: texts in, L2-normalised sentence vectors out."""

    def __init__(self, model_dir: Path, onnx_path: str, threads: int) -> None:
        self.tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pads every text to a fixed 128 and truncates at 128: override both, as
        # sentence-transformers does (pad to the longest in the batch, truncate at max_seq_length).
        max_len = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
        pad = self.tok.padding or {}
        self.tok.no_padding()
        self.tok.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))
        self.tok.enable_truncation(max_length=max_len)

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.sess.get_inputs()}

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask

    def embed(self, texts: list[str]) -> np.ndarray:
        ids, mask = self.tokenize(texts)
        feed = {"input_ids": ids, "attention_mask": mask}
        return self.sess.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]


def check_reference(enc: Encoder, ref_path: Path) -> dict:
    ref = json.loads(ref_path.read_text())
    texts = [it["text"] for it in ref["items"]]
    want = np.array([it["embedding"] for it in ref["items"]], dtype=np.float64)
    want /= np.linalg.norm(want, axis=1, keepdims=True)

    def cosines(got: np.ndarray) -> np.ndarray:
        got = got.astype(np.float64)
        return np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1)

    alone = cosines(np.concatenate([enc.embed([t]) for t in texts]))
    batched = cosines(enc.embed(texts))
    _, mask = enc.tokenize(texts)
    counts_ok = all(int(mask[i].sum()) == it["token_count"] for i, it in enumerate(ref["items"]))
    worst = int(np.argmin(np.minimum(alone, batched)))
    return {
        "min_cos_alone": float(alone.min()),
        "min_cos_batch": float(batched.min()),
        "worst_text": texts[worst][:60],
        "token_counts_match": counts_ok,
    }


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def bench_one_query(enc: Encoder, warmup: int, iters: int, max_seconds: float) -> dict:
    for _ in range(warmup):
        enc.embed([QUERY])
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(iters):
        t0 = time.perf_counter()
        enc.embed([QUERY])
        times.append(time.perf_counter() - t0)
        if t0 > deadline:
            break
    ms = [t * 1e3 for t in times]
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "mean_ms": statistics.fmean(ms),
    }


def bench_batches(enc: Encoder, sentences: list[str], batch: int, passes: int, max_seconds: float) -> dict:
    """Sentences per second at a given batch size, tokenisation included.

    Sentences are sorted by length (longest first, as sentence-transformers' encode does) and cut into
    batches, each padded to its longest. The batches are visited in a fixed shuffled order, so that a
    pass cut short by --max-seconds still measures a representative mix of lengths. The figure is the
    median over passes (each pass: sentences done / its wall time).
    """
    order = sorted(sentences, key=len, reverse=True)
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    random.Random(0).shuffle(batches)
    enc.embed(batches[0])  # warm-up at this shape class
    rates: list[float] = []
    done_total = 0
    deadline = time.perf_counter() + max_seconds
    for _ in range(passes):
        done, t0 = 0, time.perf_counter()
        for b in batches:
            enc.embed(b)
            done += len(b)
            if time.perf_counter() > deadline:
                break
        rates.append(done / (time.perf_counter() - t0))
        done_total += done
        if time.perf_counter() > deadline:
            break
    return {"sent_per_s": statistics.median(rates), "passes": len(rates), "sentences_timed": done_total}


def load_clinc_test(path: Path, limit: int | None) -> list[str]:
    data = json.loads(path.read_text())
    texts = [pair[0] for pair in data["test"]]
    return texts[:limit] if limit else texts


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=REPO / "models" / "all-MiniLM-L6-v2",
                    help="hub-layout model folder from models/fetch.sh (default: %(default)s)")
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "clinc150" / "data_full.json",
                    help="CLINC150 data_full.json; its 'test' texts feed the batches (default: %(default)s)")
    ap.add_argument("--reference", type=Path, default=SHARED / "reference" / "minilm_embeddings.json",
                    help="sentence-transformers reference vectors (default: %(default)s)")
    ap.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "semroute-peers-onnx",
                    help="where the .onnx files go (default: %(default)s)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the .onnx files even if present")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list from {','.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=2, help="intra_op_num_threads (default 2)")
    ap.add_argument("--warmup", type=int, default=30, help="one-query warm-up calls (default 30)")
    ap.add_argument("--iters", type=int, default=1000, help="one-query timed calls (default 1000)")
    ap.add_argument("--query-seconds", type=float, default=30.0, help="cap on the one-query loop per variant")
    ap.add_argument("--batch-sizes", default="8,32,64", help="comma list (default 8,32,64); empty to skip")
    ap.add_argument("--passes", type=int, default=3, help="throughput passes over the test set (median)")
    ap.add_argument("--batch-seconds", type=float, default=20.0, help="cap per variant and batch size")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N CLINC test sentences")
    ap.add_argument("--no-check", action="store_true", help="skip the reference-vector check")
    ap.add_argument("--json", type=Path, default=None, help="also write all results to this JSON file")
    args = ap.parse_args()

    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in wanted if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variants {bad}; known: {VARIANTS}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if not (args.model_dir / "model.safetensors").exists():
        sys.exit(f"{args.model_dir}/model.safetensors missing: run models/fetch.sh")

    env = {
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "opset": OPSET,
    }
    print(f"[env] {json.dumps(env)}", file=sys.stderr)

    variants = prepare_variants(args.model_dir, args.work_dir, wanted, args.rebuild)
    sentences = load_clinc_test(args.data, args.limit) if batch_sizes else []
    results: dict[str, dict] = {}
    failed_check = False
    for v, st in variants.items():
        res: dict = {"build_error": st["error"]}
        results[v] = res
        if st["error"]:
            continue
        res["ops"] = st["ops"]
        enc = Encoder(args.model_dir, st["path"], args.threads)
        if not args.no_check:
            res["check"] = chk = check_reference(enc, args.reference)
            low = min(chk["min_cos_alone"], chk["min_cos_batch"])
            ok = low > F32_MIN_COSINE and chk["token_counts_match"]
            if v.startswith("f32") and not ok:
                failed_check = True
            print(f"[check] {v}: min cosine alone {chk['min_cos_alone']:.7f}, in batch {chk['min_cos_batch']:.7f}"
                  f" (worst: {chk['worst_text']!r}); token counts match: {chk['token_counts_match']}"
                  + ("" if ok or v.startswith("int8") else "  <-- FAILS"), file=sys.stderr)
        if args.iters > 0:
            res["one_query"] = q = bench_one_query(enc, args.warmup, args.iters, args.query_seconds)
            print(f"[time] {v}: one query p50 {q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms (n={q['n']})",
                  file=sys.stderr)
        res["batches"] = {}
        for b in batch_sizes:
            res["batches"][b] = r = bench_batches(enc, sentences, b, args.passes, args.batch_seconds)
            print(f"[time] {v}: batch {b}: {r['sent_per_s']:.0f} sent/s ({r['passes']} passes, "
                  f"{r['sentences_timed']} sentences)", file=sys.stderr)
        del enc

    print(markdown_table(results, batch_sizes, env))
    if args.json:
        args.json.write_text(json.dumps({"env": env, "query": QUERY, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))
    return 1 if failed_check else 0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown_table(results: dict[str, dict], batch_sizes: list[int], env: dict) -> str:
    label = {
        "f32": "ORT F32 (plain graph)",
        "f32-fused": "ORT F32, fused graph (transformers optimizer)",
        "int8": "ORT INT8 dynamic, per-channel QInt8 (plain graph)",
        "int8-fused": "ORT INT8 dynamic, per-channel QInt8, fused graph",
    }
    head = ["variant", "one query p50 / p99 ms"] + [f"batch-{b} sent/s" for b in batch_sizes] + ["min cosine vs reference"]
    lines = [
        f"ONNX Runtime {env['onnxruntime']}, {env['threads']} intra-op threads, {env['cpu']} ({env['cores']} cores)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for v, r in results.items():
        if r.get("build_error"):
            lines.append(f"| {label[v]} | not built: {r['build_error'][:80]} |" + " |" * (len(head) - 2))
            continue
        q = r.get("one_query")
        row = [label[v], f"{q['p50_ms']:.2f} / {q['p99_ms']:.2f}" if q else "—"]
        row += [f"{r['batches'][b]['sent_per_s']:.0f}" for b in batch_sizes]
        c = r.get("check")
        row.append(f"{min(c['min_cos_alone'], c['min_cos_batch']):.6f}" if c else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
