//! A Q8_0 matrix multiply that reads each weight block once per tile of activation rows.
//!
//! Most of Gemma-3-270M's weight bytes are Q8_0 (the 262k-row tied embedding that is also the
//! output head) or Q5_0 (widened to Q8_0 exactly at load). candle 0.11.1 multiplies these one
//! (row, column) dot product at a time, so a batch of eight rows reads the 170 MB output head
//! eight times and spends its time in per-call overhead. Here a weight block is loaded once and
//! multiplied with up to [`ROW_TILE`] activation rows, which is what makes batched decoding cheaper
//! per token than single-sequence decoding.
//!
//! The arithmetic is ggml's `ggml_vec_dot_q8_0_q8_0` on AVX2: activations are quantized per
//! 32-value block to int8 with an f16 scale (`quantize_row_q8_0`, round half to even), each block
//! pair contributes `d_w * d_a * sum(w_i * a_i)` through one fused multiply-add into eight float
//! lanes, and the lanes are summed at the end. Results therefore match llama.cpp bit for bit up to
//! the order of that final sum.

use half::f16;

/// Values per block.
pub const BLOCK_LEN: usize = 32;
/// Activation rows multiplied per pass over a weight block.
pub const ROW_TILE: usize = 8;
/// Output columns per unit of parallel work.
const COLUMNS_PER_ITEM: usize = 16;

/// One block: 32 signed 8-bit values and their scale (an f16 widened to f32, which is exact).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8 {
    values: [i8; BLOCK_LEN],
    scale: f32,
}

/// A `(n_rows, n_cols)` weight matrix in Q8_0, row-major; a row is one output feature.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    n_rows: usize,
    n_cols: usize,
    blocks: Vec<BlockQ8>,
}

impl Q8Matrix {
    /// Builds the matrix from GGUF Q8_0 bytes (per block: f16 scale, 32 int8 values).
    pub fn from_q8_0_bytes(bytes: &[u8], n_rows: usize, n_cols: usize) -> Option<Self> {
        const BLOCK_BYTES: usize = 2 + BLOCK_LEN;
        if !n_cols.is_multiple_of(BLOCK_LEN) || bytes.len() != n_rows * n_cols / BLOCK_LEN * BLOCK_BYTES {
            return None;
        }
        let blocks = bytes
            .chunks_exact(BLOCK_BYTES)
            .map(|raw| {
                let mut values = [0i8; BLOCK_LEN];
                for (value, &byte) in values.iter_mut().zip(&raw[2..]) {
                    *value = byte as i8;
                }
                BlockQ8 { values, scale: f16::from_le_bytes([raw[0], raw[1]]).to_f32() }
            })
            .collect();
        Some(Q8Matrix { n_rows, n_cols, blocks })
    }

    /// Builds the matrix from GGUF Q5_0 bytes (per block: f16 scale, 32 high bits, 16 bytes of
    /// nibble pairs). Q5_0 values are integers in -16..=15, so Q8_0 holds them exactly.
    pub fn from_q5_0_bytes(bytes: &[u8], n_rows: usize, n_cols: usize) -> Option<Self> {
        const BLOCK_BYTES: usize = 2 + 4 + BLOCK_LEN / 2;
        if !n_cols.is_multiple_of(BLOCK_LEN) || bytes.len() != n_rows * n_cols / BLOCK_LEN * BLOCK_BYTES {
            return None;
        }
        let blocks = bytes
            .chunks_exact(BLOCK_BYTES)
            .map(|raw| {
                let high_bits = u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]);
                let nibbles = &raw[6..];
                let mut values = [0i8; BLOCK_LEN];
                for idx in 0..BLOCK_LEN / 2 {
                    let low = (nibbles[idx] & 0x0F) | ((((high_bits >> idx) & 1) as u8) << 4);
                    let high = (nibbles[idx] >> 4) | ((((high_bits >> (idx + 16)) & 1) as u8) << 4);
                    values[idx] = low as i8 - 16;
                    values[idx + BLOCK_LEN / 2] = high as i8 - 16;
                }
                BlockQ8 { values, scale: f16::from_le_bytes([raw[0], raw[1]]).to_f32() }
            })
            .collect();
        Some(Q8Matrix { n_rows, n_cols, blocks })
    }

    /// Number of rows (output features).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of columns (input features).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Row `row_idx` as f32 (an embedding lookup).
    pub fn dequantize_row(&self, row_idx: usize, out: &mut Vec<f32>) {
        let blocks_per_row = self.n_cols / BLOCK_LEN;
        for block in &self.blocks[row_idx * blocks_per_row..(row_idx + 1) * blocks_per_row] {
            out.extend(block.values.iter().map(|&value| value as f32 * block.scale));
        }
    }

    /// `xs (n_inputs, n_cols) x self^T -> (n_inputs, n_rows)`.
    pub fn matmul(&self, xs: &[f32], n_inputs: usize) -> Vec<f32> {
        let blocks_per_row = self.n_cols / BLOCK_LEN;
        let activations = quantize_rows(xs, n_inputs, self.n_cols);
        let mut output = vec![0f32; n_inputs * self.n_rows];
        let output_ptr = SharedOutput(output.as_mut_ptr());
        let n_items = self.n_rows.div_ceil(COLUMNS_PER_ITEM);
        let use_avx2 = has_avx2();
        candle_core::utils::barrier_pool().execute_chunked(n_items, |items| {
            let mut sums = [0f32; ROW_TILE];
            for item in items {
                let first_column = item * COLUMNS_PER_ITEM;
                let last_column = self.n_rows.min(first_column + COLUMNS_PER_ITEM);
                for first_input in (0..n_inputs).step_by(ROW_TILE) {
                    let n_tile = ROW_TILE.min(n_inputs - first_input);
                    let tile = &activations[first_input * blocks_per_row..(first_input + n_tile) * blocks_per_row];
                    for column in first_column..last_column {
                        let weights = &self.blocks[column * blocks_per_row..(column + 1) * blocks_per_row];
                        dot_tile(weights, tile, n_tile, use_avx2, &mut sums);
                        for (tile_row, &sum) in sums[..n_tile].iter().enumerate() {
                            // SAFETY: column `column` belongs to this work item only, so no other
                            // thread writes `output[(first_input + tile_row) * n_rows + column]`;
                            // `output` outlives the pool call, which joins its workers.
                            unsafe { *output_ptr.get().add((first_input + tile_row) * self.n_rows + column) = sum };
                        }
                    }
                }
            }
        });
        output
    }
}

/// The output buffer, shared by the workers of one matmul; they write disjoint elements.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);
// SAFETY: see `Q8Matrix::matmul`: writes through the pointer never overlap and end before the
// buffer is read or freed.
unsafe impl Send for SharedOutput {}
// SAFETY: as above.
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    fn get(self) -> *mut f32 {
        self.0
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantizes `(n_inputs, n_cols)` activations to Q8_0 the way ggml does: scale `amax / 127` kept
/// as f16, values `round_half_even(x * 127 / amax)`.
pub fn quantize_rows(xs: &[f32], n_inputs: usize, n_cols: usize) -> Vec<BlockQ8> {
    let mut blocks = Vec::with_capacity(n_inputs * n_cols / BLOCK_LEN);
    for chunk in xs[..n_inputs * n_cols].chunks_exact(BLOCK_LEN) {
        let amax = chunk.iter().fold(0f32, |acc, value| acc.max(value.abs()));
        let scale = amax / 127.0;
        let inverse = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut values = [0i8; BLOCK_LEN];
        for (value, &x) in values.iter_mut().zip(chunk) {
            *value = (x * inverse).round_ties_even() as i8;
        }
        blocks.push(BlockQ8 { values, scale: f16::from_f32(scale).to_f32() });
    }
    blocks
}

/// Dot products of one weight row with `n_tile` activation rows (`tile` holds them row-major).
fn dot_tile(weights: &[BlockQ8], tile: &[BlockQ8], n_tile: usize, use_avx2: bool, sums: &mut [f32; ROW_TILE]) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2 {
        // SAFETY: AVX2 and FMA were detected at run time.
        unsafe { avx2::dot_tile(weights, tile, n_tile, sums) };
        return;
    }
    let _ = use_avx2;
    let blocks_per_row = weights.len();
    for (tile_row, sum) in sums[..n_tile].iter_mut().enumerate() {
        let row = &tile[tile_row * blocks_per_row..(tile_row + 1) * blocks_per_row];
        *sum = weights
            .iter()
            .zip(row)
            .map(|(weight, activation)| {
                let dot: i32 = weight.values.iter().zip(&activation.values).map(|(&w, &a)| w as i32 * a as i32).sum();
                weight.scale * activation.scale * dot as f32
            })
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BlockQ8, ROW_TILE};

    /// See [`super::dot_tile`]. Per block pair: `|w| * sign(a, w)` through `maddubs` (exact: the
    /// products fit i16 pairs), pairs summed to i32, converted and multiply-added with the scales.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_tile(weights: &[BlockQ8], tile: &[BlockQ8], n_tile: usize, sums: &mut [f32; ROW_TILE]) {
        let blocks_per_row = weights.len();
        let ones = _mm256_set1_epi16(1);
        let mut accumulators = [_mm256_setzero_ps(); ROW_TILE];
        for (block_idx, weight) in weights.iter().enumerate() {
            // SAFETY: a block's 32 values are 32 contiguous bytes; unaligned loads are allowed.
            let weight_values = unsafe { _mm256_loadu_si256(weight.values.as_ptr() as *const __m256i) };
            let weight_abs = _mm256_sign_epi8(weight_values, weight_values);
            for (tile_row, accumulator) in accumulators[..n_tile].iter_mut().enumerate() {
                let activation = &tile[tile_row * blocks_per_row + block_idx];
                // SAFETY: as above.
                let activation_values = unsafe { _mm256_loadu_si256(activation.values.as_ptr() as *const __m256i) };
                let signed = _mm256_sign_epi8(activation_values, weight_values);
                let pairs = _mm256_maddubs_epi16(weight_abs, signed);
                let quads = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                let scale = _mm256_set1_ps(weight.scale * activation.scale);
                *accumulator = _mm256_fmadd_ps(scale, quads, *accumulator);
            }
        }
        for (sum, accumulator) in sums[..n_tile].iter_mut().zip(&accumulators[..n_tile]) {
            // ggml's hsum_float_8: add the halves, then pairs, then the last two lanes.
            let halves = _mm_add_ps(_mm256_extractf128_ps(*accumulator, 1), _mm256_castps256_ps128(*accumulator));
            let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
            let last = _mm_add_ss(pairs, _mm_movehdup_ps(pairs));
            *sum = _mm_cvtss_f32(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avx2_and_scalar_agree_with_a_float_reference() {
        let (n_rows, n_cols, n_inputs) = (37, 64, 11);
        let mut bytes = Vec::new();
        for block_idx in 0..n_rows * n_cols / BLOCK_LEN {
            bytes.extend_from_slice(&f16::from_f32(0.01 * (block_idx % 7 + 1) as f32).to_le_bytes());
            bytes.extend((0..BLOCK_LEN).map(|idx| ((idx * 37 + block_idx * 11) % 255) as u8));
        }
        let matrix = Q8Matrix::from_q8_0_bytes(&bytes, n_rows, n_cols).expect("sizes match");
        let xs: Vec<f32> = (0..n_inputs * n_cols).map(|idx| ((idx * 13) % 17) as f32 - 8.0).collect();
        let output = matrix.matmul(&xs, n_inputs);
        let activations = quantize_rows(&xs, n_inputs, n_cols);
        let mut row = Vec::new();
        for input in 0..n_inputs {
            let mut dequantized = Vec::new();
            for block in &activations[input * n_cols / BLOCK_LEN..(input + 1) * n_cols / BLOCK_LEN] {
                dequantized.extend(block.values.iter().map(|&v| v as f32 * block.scale));
            }
            for column in 0..n_rows {
                row.clear();
                matrix.dequantize_row(column, &mut row);
                let expect: f32 = row.iter().zip(&dequantized).map(|(w, a)| w * a).sum();
                let got = output[input * n_rows + column];
                assert!((got - expect).abs() <= 1e-3 * (1.0 + expect.abs()), "{input},{column}: {got} vs {expect}");
                let mut sums = [0f32; ROW_TILE];
                let blocks_per_row = n_cols / BLOCK_LEN;
                let weights = &matrix.blocks[column * blocks_per_row..(column + 1) * blocks_per_row];
                let one_row = &activations[input * blocks_per_row..(input + 1) * blocks_per_row];
                dot_tile(weights, one_row, 1, false, &mut sums);
                assert!((sums[0] - got).abs() <= 1e-3 * (1.0 + got.abs()));
            }
        }
    }
}

#[cfg(test)]
mod tmp_tests {
    use super::*;
    #[test]
    fn m1_equals_m8() {
        let (n_rows, n_cols) = (100, 640);
        let mut bytes = Vec::new();
        for block_idx in 0..n_rows * n_cols / BLOCK_LEN {
            bytes.extend_from_slice(&f16::from_f32(0.01 * (block_idx % 7 + 1) as f32).to_le_bytes());
            bytes.extend((0..BLOCK_LEN).map(|idx| ((idx * 37 + block_idx * 11) % 255) as u8));
        }
        let matrix = Q8Matrix::from_q8_0_bytes(&bytes, n_rows, n_cols).unwrap();
        let xs: Vec<f32> = (0..8 * n_cols).map(|idx| (((idx * 13) % 17) as f32 - 8.0) * 0.37).collect();
        let all = matrix.matmul(&xs, 8);
        for r in 0..8 {
            let one = matrix.matmul(&xs[r * n_cols..(r + 1) * n_cols], 1);
            assert_eq!(&one[..], &all[r * n_rows..(r + 1) * n_rows], "row {r}");
        }
    }
}
