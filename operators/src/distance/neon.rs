//! NEON kernels (aarch64, where NEON is always present): 4 lanes, scalar remainder. The `f16`
//! kernels widen in scalar code and then use the `f32` kernels' arithmetic.

use std::arch::aarch64::*;

use super::{gemm::Tile, scalar, Kernels};

/// The NEON kernel set.
pub(super) fn kernels() -> Option<Kernels> {
    if !std::arch::is_aarch64_feature_detected!("neon") {
        return None;
    }
    Some(Kernels {
        name: "neon",
        // SAFETY (all entries): the wrappers only call NEON code, detected above.
        dot: |a, b| unsafe { dot(a, b) },
        l2_squared: |a, b| unsafe { l2_squared(a, b) },
        dot_batch: |q, r, o| unsafe { dot_batch(q, r, o) },
        l2_squared_batch: |q, r, o| unsafe { l2_squared_batch(q, r, o) },
        norm_squared_batch: |q, r, o| unsafe { norm_squared_batch(q, r, o) },
        dot_batch_f16: scalar::dot_batch_f16,
        l2_squared_batch_f16: scalar::l2_squared_batch_f16,
        norm_squared_batch_f16: scalar::norm_squared_batch_f16,
        dot_tile: |t, o, s| unsafe { dot_tile(t, o, s) },
        sq_dot: |w, c| unsafe { sq_dot(w, c) },
        sq_l2_squared: |a, s, c| unsafe { sq_l2_squared(a, s, c) },
    })
}

/// Runs `step` over 8-value chunks at `i` (folding them into the two accumulators, lanes
/// `i..i + 4` and `i + 4..i + 8`), then sums `tail` over the remaining values.
macro_rules! reduce_loop {
    ($len:expr, |$i:ident, $acc0:ident, $acc1:ident| $step:block, |$j:ident| $tail:expr) => {{
        let len = $len;
        let mut $acc0 = vdupq_n_f32(0.0);
        let mut $acc1 = vdupq_n_f32(0.0);
        let mut $i = 0;
        while $i + 8 <= len {
            $step
            $i += 8;
        }
        let mut rest = 0.0f32;
        for $j in $i..len {
            rest += $tail;
        }
        vaddvq_f32(vaddq_f32($acc0, $acc1)) + rest
    }};
}

#[target_feature(enable = "neon")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: all loads are below `len`, inside both slices.
    unsafe {
        reduce_loop!(
            len,
            |i, acc0, acc1| {
                acc0 = vfmaq_f32(acc0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
                acc1 = vfmaq_f32(acc1, vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
            },
            |j| *pa.add(j) * *pb.add(j)
        )
    }
}

#[target_feature(enable = "neon")]
unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: all loads are below `len`, inside both slices.
    unsafe {
        reduce_loop!(
            len,
            |i, acc0, acc1| {
                let d0 = vsubq_f32(vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
                let d1 = vsubq_f32(vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
                acc0 = vfmaq_f32(acc0, d0, d0);
                acc1 = vfmaq_f32(acc1, d1, d1);
            },
            |j| {
                let d = *pa.add(j) - *pb.add(j);
                d * d
            }
        )
    }
}

/// Widens 8 `u8` to two vectors of 4 `f32`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_u8(ptr: *const u8) -> (float32x4_t, float32x4_t) {
    // SAFETY: the caller guarantees 8 readable values.
    unsafe {
        let wide = vmovl_u8(vld1_u8(ptr));
        (
            vcvtq_f32_u32(vmovl_u16(vget_low_u16(wide))),
            vcvtq_f32_u32(vmovl_high_u16(wide)),
        )
    }
}

#[target_feature(enable = "neon")]
unsafe fn sq_dot(weights: &[f32], codes: &[u8]) -> f32 {
    let len = weights.len().min(codes.len());
    let (pw, pc) = (weights.as_ptr(), codes.as_ptr());
    // SAFETY: all loads are below `len`, inside both slices.
    unsafe {
        reduce_loop!(
            len,
            |i, acc0, acc1| {
                let (c0, c1) = load_u8(pc.add(i));
                acc0 = vfmaq_f32(acc0, vld1q_f32(pw.add(i)), c0);
                acc1 = vfmaq_f32(acc1, vld1q_f32(pw.add(i + 4)), c1);
            },
            |j| *pw.add(j) * f32::from(*pc.add(j))
        )
    }
}

#[target_feature(enable = "neon")]
unsafe fn sq_l2_squared(shifted: &[f32], scales: &[f32], codes: &[u8]) -> f32 {
    let len = shifted.len().min(scales.len()).min(codes.len());
    let (pa, ps, pc) = (shifted.as_ptr(), scales.as_ptr(), codes.as_ptr());
    // SAFETY: all loads are below `len`, inside the three slices.
    unsafe {
        reduce_loop!(
            len,
            |i, acc0, acc1| {
                let (c0, c1) = load_u8(pc.add(i));
                let d0 = vfmsq_f32(vld1q_f32(pa.add(i)), vld1q_f32(ps.add(i)), c0);
                let d1 = vfmsq_f32(vld1q_f32(pa.add(i + 4)), vld1q_f32(ps.add(i + 4)), c1);
                acc0 = vfmaq_f32(acc0, d0, d0);
                acc1 = vfmaq_f32(acc1, d1, d1);
            },
            |j| {
                let d = *pa.add(j) - *ps.add(j) * f32::from(*pc.add(j));
                d * d
            }
        )
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(query.len().max(1))) {
        // SAFETY: NEON is enabled in this function.
        *o = unsafe { dot(query, row) };
    }
}

#[target_feature(enable = "neon")]
unsafe fn l2_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(query.len().max(1))) {
        // SAFETY: NEON is enabled in this function.
        *o = unsafe { l2_squared(query, row) };
    }
}

#[target_feature(enable = "neon")]
unsafe fn norm_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(query.len().max(1))) {
        // SAFETY: NEON is enabled in this function.
        *o = unsafe { dot(row, row) };
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_tile(tile: Tile<'_>, out: &mut [f32], out_stride: usize) {
    let dim = tile.dim;
    for i in 0..tile.m {
        let q = &tile.queries[i * dim..(i + 1) * dim];
        for j in 0..tile.n {
            // SAFETY: NEON is enabled in this function.
            out[i * out_stride + j] = unsafe { dot(q, &tile.rows[j * dim..(j + 1) * dim]) };
        }
    }
}
