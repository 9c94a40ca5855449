//! Two fused CPU operations with hand-written backward passes, where candle's generic autograd
//! wastes most of a LoRA step:
//!
//! - [`frozen_linear`]: `x W^T` for a frozen weight. candle's matmul backward always computes the
//!   weight gradient too (`lhs^T grad`, as expensive as the forward), although a frozen weight's
//!   gradient is thrown away; this op returns only the input gradient, `grad W`.
//! - [`token_logprobs_head`]: the output head fused with log-softmax and the gather of the target
//!   tokens. The head multiplies by the 262,144-row embedding; materializing `(N, V)` logits,
//!   `log_softmax` and `gather` as separate graph nodes keeps three such tensors alive and runs
//!   several passes over them. Here one pass computes the target log-probabilities and the
//!   entropies, keeps the softmax for the backward pass, and the backward pass is one subtraction
//!   and one matmul.
//!
//! Both work on CPU tensors only; on other devices the callers use plain differentiable candle ops
//! (same math, slower), so a CUDA build is a cargo feature away.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

/// `x W^T` with `x` of shape `(N, in)` and a frozen `weight` of shape `(out, in)`; the result is
/// `(N, out)` and only `x` receives a gradient.
pub fn frozen_linear(xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if !matches!(xs.device(), Device::Cpu) || !xs.track_op() {
        // Without a tracked input there is no backward pass to save; candle's matmul is as fast.
        return xs.matmul(&weight.t()?);
    }
    xs.contiguous()?.apply_op1_arc(Arc::new(Box::new(FrozenLinear { weight: weight.clone() })))
}

struct FrozenLinear {
    /// `(out, in)`, contiguous f32 on the CPU.
    weight: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n_rows, in_dim) = layout.shape().dims2()?;
        let xs = contiguous_f32(storage, layout)?;
        let (out_dim, weight_in) = self.weight.dims2()?;
        if weight_in != in_dim {
            candle_core::bail!("frozen-linear: input width {in_dim} but weight is ({out_dim}, {weight_in})");
        }
        let output = with_cpu_f32(&self.weight, |weight| Ok(matmul_nt(xs, weight, n_rows, out_dim, in_dim)))?;
        Ok((CpuStorage::F32(output), Shape::from((n_rows, out_dim))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // d(x W^T)/dx applied to the upstream gradient: grad (N, out) x W (out, in).
        Ok(Some(grad_res.matmul(&self.weight)?))
    }
}

/// Per-row results of [`token_logprobs_head`] that carry no gradient.
#[derive(Debug, Clone, Default)]
pub struct HeadStatistics {
    /// Entropy (nats) of each row's next-token distribution.
    pub entropy: Vec<f32>,
}

/// Log-probabilities of `targets[i]` under `softmax(hidden[i] E^T)` for every row `i` of
/// `hidden` `(N, H)`, with `embedding` `(V, H)` frozen. Returns the `(N,)` log-probabilities
/// (differentiable in `hidden`) and each row's entropy.
pub fn token_logprobs_head(hidden: &Tensor, embedding: &Tensor, targets: &[u32]) -> Result<(Tensor, HeadStatistics)> {
    let (n_rows, _) = hidden.dims2()?;
    if targets.len() != n_rows {
        candle_core::bail!("head: {n_rows} rows but {} targets", targets.len());
    }
    if !matches!(hidden.device(), Device::Cpu) {
        return unfused_head(hidden, embedding, targets);
    }
    let op = Arc::new(TokenLogprobHead {
        embedding: embedding.clone(),
        targets: targets.to_vec(),
        keep_softmax: hidden.track_op(),
        softmax: Mutex::new(None),
        entropy: Mutex::new(Vec::new()),
    });
    let logprobs = hidden.contiguous()?.apply_op1_arc(Arc::new(Box::new(SharedHead(op.clone()))))?;
    let entropy = op.entropy.lock().map(|mut entropy| std::mem::take(&mut *entropy)).unwrap_or_default();
    Ok((logprobs, HeadStatistics { entropy }))
}

/// The same computation with stock candle ops, for devices without the fused kernel.
fn unfused_head(hidden: &Tensor, embedding: &Tensor, targets: &[u32]) -> Result<(Tensor, HeadStatistics)> {
    let logits = hidden.matmul(&embedding.t()?)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
    let index = Tensor::from_slice(targets, (targets.len(), 1), hidden.device())?;
    let picked = log_probs.gather(&index, 1)?.squeeze(1)?;
    let probs = log_probs.exp()?;
    let entropy = (probs * log_probs)?.sum(1)?.neg()?.to_vec1::<f32>()?;
    Ok((picked, HeadStatistics { entropy }))
}

/// Lets the caller read the entropies the op computed while the graph owns the op.
struct SharedHead(Arc<TokenLogprobHead>);

struct TokenLogprobHead {
    /// `(V, H)`, contiguous f32 on the CPU.
    embedding: Tensor,
    targets: Vec<u32>,
    /// Whether to keep the `(N, V)` softmax for the backward pass (only when it can run).
    keep_softmax: bool,
    softmax: Mutex<Option<Vec<f32>>>,
    entropy: Mutex<Vec<f32>>,
}

impl CustomOp1 for SharedHead {
    fn name(&self) -> &'static str {
        "token-logprobs-head"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let head = &self.0;
        let (n_rows, hidden_dim) = layout.shape().dims2()?;
        let hidden = contiguous_f32(storage, layout)?;
        let (vocab, embed_dim) = head.embedding.dims2()?;
        if embed_dim != hidden_dim {
            candle_core::bail!("head: hidden width {hidden_dim} but embedding is ({vocab}, {embed_dim})");
        }
        if let Some(&bad) = head.targets.iter().find(|&&target| target as usize >= vocab) {
            candle_core::bail!("head: target token {bad} outside the vocabulary of {vocab}");
        }
        let mut logits =
            with_cpu_f32(&head.embedding, |embedding| Ok(matmul_nt(hidden, embedding, n_rows, vocab, hidden_dim)))?;
        // One pass per row: log-sum-exp, the target's log-probability and the entropy; the row is
        // then overwritten with its softmax, which is all the backward pass needs.
        let mut logprobs = vec![0f32; n_rows];
        let mut entropy = vec![0f32; n_rows];
        logits
            .par_chunks_mut(vocab)
            .zip(logprobs.par_iter_mut())
            .zip(entropy.par_iter_mut())
            .zip(head.targets.par_iter())
            .for_each(|(((row, logprob), entropy), &target)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let target_shifted = (row[target as usize] - max) as f64;
                let mut sum = 0f64;
                let mut weighted = 0f64;
                for value in row.iter_mut() {
                    let shifted = *value - max;
                    let exp = shifted.exp();
                    sum += exp as f64;
                    weighted += (exp * shifted) as f64;
                    *value = exp;
                }
                let log_sum = sum.ln();
                *logprob = (target_shifted - log_sum) as f32;
                // H = log Z - E[shifted] with Z = sum exp(shifted).
                *entropy = (log_sum - weighted / sum) as f32;
                let inv_sum = (1.0 / sum) as f32;
                row.iter_mut().for_each(|value| *value *= inv_sum);
            });
        if let Ok(mut slot) = head.entropy.lock() {
            *slot = entropy;
        }
        if head.keep_softmax {
            if let Ok(mut slot) = head.softmax.lock() {
                *slot = Some(logits);
            }
        }
        Ok((CpuStorage::F32(logprobs), Shape::from(n_rows)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let head = &self.0;
        let mut softmax = match head.softmax.lock().ok().and_then(|mut slot| slot.take()) {
            Some(softmax) => softmax,
            None => candle_core::bail!("head: backward pass run twice or on a forward without gradient"),
        };
        let (n_rows, hidden_dim) = arg.dims2()?;
        let (vocab, _) = head.embedding.dims2()?;
        let upstream = grad_res.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        // d logp_t / d logits = onehot(t) - softmax, scaled by the upstream gradient of the row.
        softmax.par_chunks_mut(vocab).zip(upstream.par_iter()).zip(head.targets.par_iter()).for_each(
            |((row, &grad), &target)| {
                row.iter_mut().for_each(|value| *value *= -grad);
                row[target as usize] += grad;
            },
        );
        let grad_hidden =
            with_cpu_f32(&head.embedding, |embedding| Ok(matmul_nn(&softmax, embedding, n_rows, hidden_dim, vocab)))?;
        Ok(Some(Tensor::from_vec(grad_hidden, (n_rows, hidden_dim), arg.device())?))
    }
}

/// The contiguous f32 slice of an op input.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let values = match storage {
        CpuStorage::F32(values) => values,
        _ => candle_core::bail!("fused op: expected f32 input"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("fused op: input is not contiguous"),
    }
}

/// Runs `work` on the contiguous f32 data of a CPU tensor.
fn with_cpu_f32<T>(tensor: &Tensor, work: impl FnOnce(&[f32]) -> Result<T>) -> Result<T> {
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => work(contiguous_f32(cpu, layout)?),
        _ => candle_core::bail!("fused op: weight is not on the CPU"),
    }
}

/// `A (m, k) x B^T` with `B` stored `(n, k)` row-major; returns `(m, n)`.
pub(crate) fn matmul_nt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    assert!(b.len() >= n * k);
    // Element (kk, j) of B^T is b[j * k + kk]: column stride k, row stride 1.
    matmul_with_rhs_strides(a, b, m, n, k, k as isize, 1)
}

/// `A (m, k) x B (k, n)`, both row-major; returns `(m, n)`.
pub(crate) fn matmul_nn(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    assert!(b.len() >= k * n);
    // Element (kk, j) of B is b[kk * n + j]: column stride 1, row stride n.
    matmul_with_rhs_strides(a, b, m, n, k, 1, n as isize)
}

/// `A (m, k) x R` for a `(k, n)` right-hand side read from `b` with the given column and row
/// strides (callers check that `b` covers them).
fn matmul_with_rhs_strides(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    rhs_col_stride: isize,
    rhs_row_stride: isize,
) -> Vec<f32> {
    assert!(a.len() >= m * k);
    let mut out = vec![0f32; m * n];
    // SAFETY: `out` holds m*n elements written row-major (column stride 1, row stride n); `a`
    // holds m*k read row-major; the callers assert that `b` holds every element the strides reach.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            rhs_col_stride,
            rhs_row_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism(),
        );
    }
    out
}

fn parallelism() -> gemm::Parallelism {
    let n_threads = candle_core::utils::get_num_threads();
    if n_threads > 1 {
        gemm::Parallelism::Rayon(n_threads)
    } else {
        gemm::Parallelism::None
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Var};

    use super::*;

    fn seeded(shape: (usize, usize), seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn frozen_linear_matches_matmul_forward_and_input_gradient() {
        let weight = seeded((5, 7), 1);
        let input = Var::from_tensor(&seeded((3, 7), 2)).unwrap();
        let upstream = seeded((3, 5), 3);

        let fused = frozen_linear(input.as_tensor(), &weight).unwrap();
        let plain = input.as_tensor().matmul(&weight.t().unwrap()).unwrap();
        assert!(max_abs_diff(&fused, &plain) < 1e-5);

        let fused_grad = (fused * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let plain_grad = (plain * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let fused_grad = fused_grad.get(input.as_tensor()).unwrap();
        let plain_grad = plain_grad.get(input.as_tensor()).unwrap();
        assert!(max_abs_diff(fused_grad, plain_grad) < 1e-5);
    }

    #[test]
    fn head_matches_log_softmax_gather_and_its_gradient() {
        let embedding = (seeded((50, 6), 4) * 3.0).unwrap();
        let hidden = Var::from_tensor(&seeded((4, 6), 5)).unwrap();
        let targets = [3u32, 49, 0, 17];
        let upstream = Tensor::new(&[0.5f32, -1.0, 2.0, 0.25], &Device::Cpu).unwrap();

        let (fused, stats) = token_logprobs_head(hidden.as_tensor(), &embedding, &targets).unwrap();
        let (plain, plain_stats) = unfused_head(hidden.as_tensor(), &embedding, &targets).unwrap();
        assert!(max_abs_diff(&fused, &plain) < 1e-5);
        for (a, b) in stats.entropy.iter().zip(&plain_stats.entropy) {
            assert!((a - b).abs() < 1e-5, "entropy {a} vs {b}");
        }

        let fused_grad = (fused * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let plain_grad = (plain * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let fused_grad = fused_grad.get(hidden.as_tensor()).unwrap();
        let plain_grad = plain_grad.get(hidden.as_tensor()).unwrap();
        assert!(max_abs_diff(fused_grad, plain_grad) < 1e-4);
    }

    #[test]
    fn head_rejects_out_of_vocabulary_targets_and_mismatched_counts() {
        let embedding = seeded((10, 4), 6);
        let hidden = seeded((2, 4), 7);
        assert!(token_logprobs_head(&hidden, &embedding, &[1]).is_err());
        assert!(token_logprobs_head(&hidden, &embedding, &[1, 10]).is_err());
        let (logprobs, _) = token_logprobs_head(&hidden, &embedding, &[1, 9]).unwrap();
        assert_eq!(logprobs.dtype(), DType::F32);
        assert!(logprobs.to_vec1::<f32>().unwrap().iter().all(|&value| value < 0.0));
    }
}
