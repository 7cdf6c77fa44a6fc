//! Late interaction (`matching.aggregation: late`): token-level evidence on top of a route prototype.
//!
//! Every exemplar keeps its token vectors (the encoder's last hidden state, [CLS]/[SEP] dropped, each
//! L2-normalised). A route's "bag" score for a query is the mean, over the query's tokens, of the best cosine
//! to any token of any of the route's exemplars (ColBERT's MaxSim against the route's pooled tokens). The
//! prototype is `cent_nt`: the normalised mean of the exemplars' token-pooled vectors (the normalised sum of
//! their unit tokens), which weighs every token alike where the model's mean pooling lets long vectors
//! dominate. A route scores `(cent_nt + w x bag) / (1 + w)`: dividing by `1 + w` keeps scores in [-1, 1],
//! so thresholds keep their range, without changing which route wins.
//!
//! Bag scores cost a small matrix product per route, so only the `shortlist` routes whose `cent_nt` is
//! highest get one (measured offline on CLINC150: 5 to 10 routes give the same figures as all 150).
//!
//! Memory: token vectors are stored as int8 with one scale per token (`max |x| / 127`), a quarter of F32,
//! and multiplied with the int8-weight kernel of [`semroute_kernels::gemm_i8`].

use semroute_kernels::{gemm_i8, Activation, Isa, PackedI8};

use super::head::{HeadError, HeadTraining, LinearHead};
use super::vector::{dot, normalize};

/// One text's token vectors, unit length, quantised to int8 with a scale per token. This is the form
/// exemplar tokens are stored in (the embedding store persists it as is), so an index built from stored
/// tokens equals one built from fresh ones.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRows {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

/// Keeps the inner tokens of an encoder output (drops [CLS] first and [SEP] last) when there are any.
fn inner(hidden: &[Vec<f32>]) -> &[Vec<f32>] {
    if hidden.len() >= 3 {
        &hidden[1..hidden.len() - 1]
    } else {
        hidden
    }
}

impl TokenRows {
    /// From the encoder's token vectors of one text ([`crate::embedding::TokenEmbedding::tokens`]):
    /// [CLS]/[SEP] dropped, each token L2-normalised, then quantised. Zero or non-finite tokens are skipped.
    pub fn from_hidden(hidden: &[Vec<f32>], dim: usize) -> Self {
        let mut codes = Vec::with_capacity(hidden.len() * dim);
        let mut scales = Vec::with_capacity(hidden.len());
        for t in inner(hidden) {
            let mut t = t.clone();
            if t.len() != dim || !normalize(&mut t) {
                continue;
            }
            let amax = t.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            codes.extend(
                t.iter()
                    .map(|&v| (v / scale).round().clamp(-127.0, 127.0) as i8),
            );
            scales.push(scale);
        }
        Self { dim, codes, scales }
    }

    /// From raw parts (the embedding store's file); `None` when the sizes disagree.
    pub fn from_parts(dim: usize, codes: Vec<i8>, scales: Vec<f32>) -> Option<Self> {
        (dim > 0 && codes.len() == scales.len() * dim).then_some(Self { dim, codes, scales })
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// True when the text kept no token.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// The int8 codes, `len x dim` row-major.
    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// One scale per token.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The tokens as F32 (`len x dim` row-major), as the index uses them.
    pub fn dequantised(&self) -> Vec<f32> {
        self.codes
            .chunks_exact(self.dim.max(1))
            .zip(&self.scales)
            .flat_map(|(row, &s)| row.iter().map(move |&c| c as f32 * s))
            .collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.codes.len() + self.scales.len() * 4
    }
}

/// The token-pooled sentence vector: the normalised sum of unit token rows (`rows`, `n x dim`). `None` when
/// there is no usable token.
fn pooled(rows: &[f32], dim: usize) -> Option<Vec<f32>> {
    let mut sum = vec![0f32; dim];
    for r in rows.chunks_exact(dim) {
        sum.iter_mut().zip(r).for_each(|(s, x)| *s += x);
    }
    normalize(&mut sum).then_some(sum)
}

/// A query as the late rule needs it: its unit token vectors (F32; the kernel quantises them per row) and
/// its token-pooled vector.
#[derive(Debug, Clone, PartialEq)]
pub struct LateQuery {
    dim: usize,
    /// `m x dim` row-major unit vectors.
    tokens: Vec<f32>,
    /// Token-pooled unit vector (compared with the `cent_nt` prototypes).
    pooled: Vec<f32>,
}

impl LateQuery {
    /// From the encoder's token vectors of the query ([`crate::embedding::TokenEmbedding::tokens`]).
    /// `None` when no token is usable (then the late rule cannot score this query).
    pub fn from_hidden(hidden: &[Vec<f32>], dim: usize) -> Option<Self> {
        let mut tokens = Vec::with_capacity(hidden.len() * dim);
        for t in inner(hidden) {
            let mut t = t.clone();
            if t.len() == dim && normalize(&mut t) {
                tokens.extend_from_slice(&t);
            }
        }
        let pooled = pooled(&tokens, dim)?;
        Some(Self {
            dim,
            tokens,
            pooled,
        })
    }

    /// Number of query tokens.
    pub fn len(&self) -> usize {
        self.tokens.len() / self.dim
    }

    /// Always false: a query has at least one token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token-pooled unit vector.
    pub fn pooled(&self) -> &[f32] {
        &self.pooled
    }

    /// The unit token vectors, `len x dim` row-major.
    pub fn tokens(&self) -> &[f32] {
        &self.tokens
    }
}

/// What the late rule knows of one query: `cent_nt` similarity to every route, and bag scores of the
/// shortlisted routes (highest `cent_nt` first). Kept apart from the index so calibration can try many
/// weights on evidence computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct LateEvidence {
    /// Similarity of the query's pooled vector to every route's `cent_nt` prototype, in route order.
    pub cent_nt: Vec<f32>,
    /// `(route, bag score)` of the shortlisted routes, highest `cent_nt` first.
    pub bag: Vec<(usize, f32)>,
    /// The trained head's score of every route, in route order; empty when the index has no head.
    pub head: Vec<f32>,
}

/// Route scores of the late rule, unsorted: `(cent_nt + weight x bag + head_weight x head) / (1 + weight +
/// head_weight)` for the shortlisted routes in `evidence`, the first `shortlist` of them. Without head
/// scores in the evidence the head term is left out (`head_weight` counts as 0).
pub fn late_combine(
    evidence: &LateEvidence,
    weight: f32,
    head_weight: f32,
    shortlist: usize,
) -> Vec<(usize, f32)> {
    let h = if evidence.head.is_empty() {
        0.0
    } else {
        head_weight
    };
    let scale = 1.0 / (1.0 + weight + h);
    evidence
        .bag
        .iter()
        .take(shortlist.max(1))
        .map(|&(r, bag)| {
            let head = evidence.head.get(r).copied().unwrap_or(0.0);
            (r, (evidence.cent_nt[r] + weight * bag + h * head) * scale)
        })
        .collect()
}

/// Per-route token matrices and `cent_nt` prototypes. Built only when the rule is `late`.
pub struct LateIndex {
    dim: usize,
    /// `routes x dim` unit prototypes.
    centroids: Vec<f32>,
    /// Per route, all its exemplars' tokens, packed for the int8 kernel.
    tokens: Vec<PackedI8>,
    token_counts: Vec<usize>,
    isa: Isa,
    /// A classifier over token-pooled vectors, when `matching.head_weight` asks for one.
    head: Option<LinearHead>,
}

/// Why a late index cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyRoute(pub usize);

/// Trains a [`LinearHead`] on each exemplar's token-pooled vector (the input `cent_nt` prototypes are built
/// from); exemplars without tokens are left out.
pub fn train_head<'a>(
    dim: usize,
    n_routes: usize,
    exemplars: impl IntoIterator<Item = (usize, &'a TokenRows)>,
    settings: HeadTraining,
) -> Result<LinearHead, HeadError> {
    let mut inputs = Vec::new();
    let mut labels = Vec::new();
    for (r, t) in exemplars {
        if let Some(p) = pooled(&t.dequantised(), dim) {
            inputs.extend_from_slice(&p);
            labels.push(r);
        }
    }
    LinearHead::train(&inputs, &labels, dim, n_routes, settings)
}

impl LateIndex {
    /// Builds from each exemplar's `(route, tokens)`. Fails with the first route that has no token at all.
    pub fn build<'a>(
        dim: usize,
        n_routes: usize,
        exemplars: impl IntoIterator<Item = (usize, &'a TokenRows)>,
    ) -> Result<Self, EmptyRoute> {
        let mut rows: Vec<Vec<f32>> = vec![Vec::new(); n_routes];
        let mut sums = vec![0f32; n_routes * dim];
        for (r, t) in exemplars {
            let deq = t.dequantised();
            // The prototype is built from the same (dequantised) tokens the bag scores use.
            if let Some(p) = pooled(&deq, dim) {
                sums[r * dim..(r + 1) * dim]
                    .iter_mut()
                    .zip(&p)
                    .for_each(|(s, x)| *s += x);
            }
            rows[r].extend_from_slice(&deq);
        }
        let mut tokens = Vec::with_capacity(n_routes);
        let mut token_counts = Vec::with_capacity(n_routes);
        for (r, (rows, c)) in rows.iter().zip(sums.chunks_exact_mut(dim)).enumerate() {
            let n = rows.len() / dim;
            if n == 0 || !normalize(c) {
                return Err(EmptyRoute(r));
            }
            tokens.push(PackedI8::pack(rows, n, dim));
            token_counts.push(n);
        }
        Ok(Self {
            dim,
            centroids: sums,
            tokens,
            token_counts,
            isa: Isa::detect(),
            head: None,
        })
    }

    /// This index with `head` scoring every route (see [`train_head`]).
    pub fn with_head(mut self, head: LinearHead) -> Self {
        self.head = Some(head);
        self
    }

    /// The trained head, when there is one.
    pub fn head(&self) -> Option<&LinearHead> {
        self.head.as_ref()
    }

    /// Number of routes.
    pub fn routes(&self) -> usize {
        self.tokens.len()
    }

    /// Stored tokens, all routes together.
    pub fn token_count(&self) -> usize {
        self.token_counts.iter().sum()
    }

    /// Approximate bytes held (int8 tokens with their scales and padding, and the prototypes).
    pub fn bytes(&self) -> usize {
        let packed: usize = self
            .token_counts
            .iter()
            .map(|&n| n.div_ceil(gemm_i8::NR) * gemm_i8::NR * (self.dim.next_multiple_of(2) + 4))
            .sum();
        packed + self.centroids.len() * 4
    }

    /// `cent_nt` similarity of `q` to every route, in route order.
    pub fn centroid_scores(&self, q: &LateQuery) -> Vec<f32> {
        self.centroids
            .chunks_exact(self.dim)
            .map(|c| dot(q.pooled(), c))
            .collect()
    }

    /// The bag score of route `r`: mean over the query's tokens of the best cosine to any route token.
    pub fn bag(&self, r: usize, q: &LateQuery) -> f32 {
        let (m, n) = (q.len(), self.token_counts[r]);
        if m == 0 {
            return 0.0;
        }
        let mut sims = vec![0f32; m * n];
        gemm_i8::matmul(
            self.isa,
            q.tokens(),
            m,
            &self.tokens[r],
            None,
            Activation::None,
            semroute_kernels::uninit_mut(&mut sims),
        );
        let total: f32 = sims
            .chunks_exact(n)
            .map(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .sum();
        total / m as f32
    }

    /// The evidence for `q`: `cent_nt` of every route and bag scores of the `shortlist` best of them.
    pub fn evidence(&self, q: &LateQuery, shortlist: usize) -> LateEvidence {
        let cent_nt = self.centroid_scores(q);
        let mut order: Vec<usize> = (0..cent_nt.len()).collect();
        let by_desc = |a: &usize, b: &usize| cent_nt[*b].total_cmp(&cent_nt[*a]);
        let k = shortlist.clamp(1, order.len().max(1));
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, by_desc);
            order.truncate(k);
        }
        order.sort_unstable_by(by_desc);
        let bag = order.into_iter().map(|r| (r, self.bag(r, q))).collect();
        let head = self
            .head
            .as_ref()
            .map(|h| h.scores(q.pooled()))
            .unwrap_or_default();
        LateEvidence { cent_nt, bag, head }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        normalize(&mut v);
        v
    }

    /// Hidden states of a text: [CLS], the given tokens, [SEP].
    fn text(tokens: &[&[f32]]) -> Vec<Vec<f32>> {
        let mut h = vec![vec![9.0, -9.0, 9.0, -9.0]];
        h.extend(tokens.iter().map(|t| t.to_vec()));
        h.push(vec![-9.0, 9.0, -9.0, 9.0]);
        h
    }

    /// The exact F32 bag score, as the research scripts compute it.
    fn reference_bag(route_tokens: &[Vec<f32>], q: &[Vec<f32>]) -> f32 {
        q.iter()
            .map(|qt| {
                route_tokens
                    .iter()
                    .map(|t| dot(qt, t))
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .sum::<f32>()
            / q.len() as f32
    }

    #[test]
    fn special_tokens_are_dropped_and_rows_are_unit() {
        let t = TokenRows::from_hidden(&text(&[&[3.0, 0.0, 0.0, 4.0], &[0.0, 2.0, 0.0, 0.0]]), 4);
        assert_eq!(t.len(), 2);
        let d = t.dequantised();
        assert!(
            (d[0] - 0.6).abs() < 0.01 && (d[3] - 0.8).abs() < 0.01,
            "{d:?}"
        );
        assert!((d[5] - 1.0).abs() < 1e-6);
        // A text of [CLS][SEP] only keeps them rather than nothing.
        assert_eq!(TokenRows::from_hidden(&text(&[]), 4).len(), 2);
        // The round trip through raw parts is lossless.
        let again = TokenRows::from_parts(4, t.codes().to_vec(), t.scales().to_vec()).unwrap();
        assert_eq!(again, t);
        assert!(TokenRows::from_parts(4, vec![0; 5], vec![1.0]).is_none());
    }

    #[test]
    fn bag_matches_the_exact_maxsim_within_quantisation_error() {
        // Pseudo-random but fixed vectors: two routes of three exemplars with 2-4 tokens each.
        let dim = 24;
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut exemplars = Vec::new();
        let mut exact: Vec<Vec<Vec<f32>>> = vec![Vec::new(), Vec::new()];
        for e in 0..6 {
            let toks: Vec<Vec<f32>> = (0..2 + e % 3)
                .map(|_| (0..dim).map(|_| next()).collect())
                .collect();
            let mut hidden = vec![vec![1.0; dim]];
            hidden.extend(toks.iter().cloned());
            hidden.push(vec![1.0; dim]);
            exact[e % 2].extend(toks.iter().map(|t| unit(t)));
            exemplars.push((e % 2, TokenRows::from_hidden(&hidden, dim)));
        }
        let idx = LateIndex::build(dim, 2, exemplars.iter().map(|(r, t)| (*r, t))).unwrap();
        assert_eq!(idx.token_count(), exact[0].len() + exact[1].len());
        let q_toks: Vec<Vec<f32>> = (0..5).map(|_| (0..dim).map(|_| next()).collect()).collect();
        let mut hidden = vec![vec![0.5; dim]];
        hidden.extend(q_toks.iter().cloned());
        hidden.push(vec![0.5; dim]);
        let q = LateQuery::from_hidden(&hidden, dim).unwrap();
        assert_eq!(q.len(), 5);
        let q_unit: Vec<Vec<f32>> = q_toks.iter().map(|t| unit(t)).collect();
        for (r, toks) in exact.iter().enumerate() {
            let want = reference_bag(toks, &q_unit);
            let got = idx.bag(r, &q);
            assert!((want - got).abs() < 0.01, "route {r}: {got} vs {want}");
        }
    }

    #[test]
    fn late_rule_reranks_the_shortlist() {
        // Route 0 has the closer prototype, route 1 an exemplar token equal to the query's token.
        let a = TokenRows::from_hidden(&text(&[&[1.0, 0.2, 0.0, 0.0], &[1.0, 0.0, 0.3, 0.0]]), 4);
        let b = TokenRows::from_hidden(
            &text(&[
                &[0.0, 0.0, 0.0, 1.0],
                &[0.0, 0.0, 0.0, 1.0],
                &[0.6, 0.8, 0.0, 0.0],
            ]),
            4,
        );
        let c = TokenRows::from_hidden(&text(&[&[0.0, 0.0, 1.0, 0.0]]), 4);
        let idx = LateIndex::build(4, 3, [(0, &a), (1, &b), (2, &c)]).unwrap();
        let q = LateQuery::from_hidden(&text(&[&[0.6, 0.8, 0.0, 0.0]]), 4).unwrap();
        let ev = idx.evidence(&q, 2);
        assert_eq!(ev.cent_nt.len(), 3);
        // Shortlist: the two best prototypes, best first; route 2 (orthogonal prototype) is left out.
        assert_eq!(ev.bag.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 1]);
        assert!(ev.cent_nt[0] > ev.cent_nt[1]);
        // Weight 0 is the prototype alone; a large weight lets the exact token match win.
        let best = |w: f32| {
            let mut s = late_combine(&ev, w, 0.0, 10);
            s.sort_by(|x, y| y.1.total_cmp(&x.1));
            s[0]
        };
        assert_eq!(best(0.0).0, 0);
        assert!((best(0.0).1 - ev.cent_nt[0]).abs() < 1e-6);
        assert_eq!(best(4.0).0, 1);
        // Scores stay within [-1, 1] whatever the weight.
        assert!(best(4.0).1 <= 1.0 + 1e-3);
        // A shortlist of one scores one route only.
        assert_eq!(late_combine(&ev, 1.0, 0.0, 1).len(), 1);
        // No head in the evidence: a head weight changes nothing.
        assert_eq!(
            late_combine(&ev, 1.0, 3.0, 10),
            late_combine(&ev, 1.0, 0.0, 10)
        );
    }

    #[test]
    fn the_head_term_joins_the_late_score() {
        let ev = LateEvidence {
            cent_nt: vec![0.8, 0.7],
            bag: vec![(0, 0.9), (1, 0.8)],
            head: vec![-0.5, 0.5],
        };
        let top = |h: f32| {
            let mut s = late_combine(&ev, 1.0, h, 10);
            s.sort_by(|x, y| y.1.total_cmp(&x.1));
            s[0]
        };
        assert_eq!(top(0.0).0, 0);
        assert!((top(0.0).1 - 0.85).abs() < 1e-6);
        // (0.7 + 0.8 + 2 x 0.5) / 4 beats (0.8 + 0.9 - 2 x 0.5) / 4.
        assert_eq!(top(2.0).0, 1);
        assert!((top(2.0).1 - 0.625).abs() < 1e-6);
    }

    #[test]
    fn a_trained_head_scores_every_route_in_the_evidence() {
        let a = TokenRows::from_hidden(&text(&[&[1.0, 0.2, 0.0, 0.0], &[1.0, 0.0, 0.3, 0.0]]), 4);
        let b = TokenRows::from_hidden(&text(&[&[0.0, 1.0, 0.1, 0.0]]), 4);
        let c = TokenRows::from_hidden(&text(&[&[0.0, 0.0, 0.2, 1.0]]), 4);
        let ex = [(0, &a), (1, &b), (2, &c)];
        let head = train_head(4, 3, ex, HeadTraining::default()).unwrap();
        let idx = LateIndex::build(4, 3, ex).unwrap().with_head(head);
        let q = LateQuery::from_hidden(&text(&[&[0.0, 0.9, 0.2, 0.0]]), 4).unwrap();
        let ev = idx.evidence(&q, 1);
        assert_eq!(ev.head.len(), 3);
        let best = (0..3)
            .max_by(|&x, &y| ev.head[x].total_cmp(&ev.head[y]))
            .unwrap();
        assert_eq!(best, 1, "{:?}", ev.head);
    }

    #[test]
    fn a_route_without_tokens_is_refused() {
        let a = TokenRows::from_hidden(&text(&[&[1.0, 0.0, 0.0, 0.0]]), 4);
        assert_eq!(LateIndex::build(4, 2, [(0, &a)]).err(), Some(EmptyRoute(1)));
    }
}
