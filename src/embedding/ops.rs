//! candle custom ops over our kernels (`semroute_kernels`): the encoder keeps candle tensors end to end, and
//! on CPU the hot ops run our code instead of candle's generic kernels.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};

use std::ops::Range;

use semroute_kernels::{self as kernels, attention::Heads, Activation, Isa};

/// The contiguous f32 data behind a CPU tensor.
fn f32_data<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 tensors are supported");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous");
    };
    Ok(&data[start..end])
}

/// `act(x W^T + b)` over the last dimension with packed weights.
pub struct LinearOp<'a> {
    /// The layer.
    pub linear: &'a kernels::Linear,
    /// Applied to the output before it is stored.
    pub act: Activation,
}

impl CustomOp1 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "semroute-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), storage, layout)?;
        let k = self.linear.in_features();
        let dims = layout.shape().dims();
        if dims.last() != Some(&k) {
            candle_core::bail!("semroute-linear: input {dims:?} does not end in {k}");
        }
        let m = x.len() / k;
        let n = self.linear.out_features();
        let out = self.linear.forward_vec(x, m, self.act);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// `LayerNorm(x + residual)` over the last dimension.
pub struct AddNormOp<'a> {
    /// Scale.
    pub gamma: &'a [f32],
    /// Shift.
    pub beta: &'a [f32],
    /// Variance epsilon.
    pub eps: f32,
    /// Kernel instruction set.
    pub isa: Isa,
}

impl CustomOp2 for AddNormOp<'_> {
    fn name(&self) -> &'static str {
        "semroute-add-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), s1, l1)?;
        let r = f32_data(self.name(), s2, l2)?;
        let h = self.gamma.len();
        if l1.shape() != l2.shape() || l1.shape().dims().last() != Some(&h) {
            candle_core::bail!(
                "semroute-add-norm: shapes {:?} and {:?} (width {h})",
                l1.shape(),
                l2.shape()
            );
        }
        let mut out = vec![0f32; x.len()];
        kernels::math::add_layer_norm_rows(
            self.isa, x, r, self.gamma, self.beta, self.eps, &mut out,
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Self-attention from the fused QKV projection `(.., 3 hidden)` of a ragged batch (its sequences' real
/// tokens back to back, see [`kernels::attention`]) to the context `(.., hidden)`.
pub struct AttentionOp<'a> {
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Each sequence's rows, consecutive, covering every row.
    pub sequences: &'a [Range<usize>],
    /// Kernel instruction set.
    pub isa: Isa,
}

impl CustomOp1 for AttentionOp<'_> {
    fn name(&self) -> &'static str {
        "semroute-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = f32_data(self.name(), storage, layout)?;
        let hidden = self.heads * self.head_dim;
        let dims = layout.shape().dims();
        let rows = self.sequences.last().map_or(0, |s| s.end);
        if dims.last() != Some(&(3 * hidden)) || qkv.len() != rows * 3 * hidden {
            candle_core::bail!(
                "semroute-attention: qkv {dims:?} for {rows} rows of {} heads of {}",
                self.heads,
                self.head_dim
            );
        }
        let mut out = vec![0f32; rows * hidden];
        let d = Heads {
            heads: self.heads,
            head_dim: self.head_dim,
        };
        kernels::attention::attention(self.isa, qkv, self.sequences, d, &mut out);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty") = hidden;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}
