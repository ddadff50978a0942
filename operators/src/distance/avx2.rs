//! AVX2 + FMA kernels (x86_64 with `avx2`, `fma` and `f16c`): 8 lanes, scalar remainder.

use std::arch::x86_64::*;

use half::f16;

use super::gemm::Tile;
use super::Kernels;

/// The AVX2 kernel set, if the CPU has AVX2, FMA and F16C.
pub(super) fn kernels() -> Option<Kernels> {
    if !(is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    {
        return None;
    }
    Some(Kernels {
        name: "avx2",
        // SAFETY (all entries): the wrappers only call AVX2/FMA/F16C code, and this set is only
        // built after the features were detected above.
        dot: |a, b| unsafe { dot(a, b) },
        l2_squared: |a, b| unsafe { l2_squared(a, b) },
        dot_batch: |q, r, o| unsafe { dot_batch(q, r, o) },
        l2_squared_batch: |q, r, o| unsafe { l2_squared_batch(q, r, o) },
        norm_squared_batch: |q, r, o| unsafe { norm_squared_batch(q, r, o) },
        dot_batch_f16: |q, r, o| unsafe { dot_batch_f16(q, r, o) },
        l2_squared_batch_f16: |q, r, o| unsafe { l2_squared_batch_f16(q, r, o) },
        norm_squared_batch_f16: |q, r, o| unsafe { norm_squared_batch_f16(q, r, o) },
        dot_tile: |t, o, s| unsafe { dot_tile(t, o, s) },
        sq_dot: |w, c| unsafe { sq_dot(w, c) },
        sq_l2_squared: |a, s, c| unsafe { sq_l2_squared(a, s, c) },
    })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load(ptr: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 8 readable values.
    unsafe { _mm256_loadu_ps(ptr) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(ptr: *const f16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable values (16 bytes).
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(ptr as *const __m128i)) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_u8(ptr: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 8 readable values (8 bytes).
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(ptr as *const __m128i))) }
}

/// Runs `step` over full 8-lane chunks with two accumulators, then `tail` over the rest.
macro_rules! reduce_loop {
    ($len:expr, |$i:ident| $step:expr, |$j:ident| $tail:expr) => {{
        let len = $len;
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut $i = 0;
        while $i + 16 <= len {
            acc0 = $step(acc0);
            $i += 8;
            acc1 = $step(acc1);
            $i += 8;
        }
        while $i + 8 <= len {
            acc0 = $step(acc0);
            $i += 8;
        }
        let mut rest = 0.0f32;
        for $j in $i..len {
            rest += $tail;
        }
        hsum(_mm256_add_ps(acc0, acc1)) + rest
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32(a: *const f32, b: *const f32, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(
            len,
            |i| |acc| _mm256_fmadd_ps(load(a.add(i)), load(b.add(i)), acc),
            |j| *a.add(j) * *b.add(j)
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn l2_f32(a: *const f32, b: *const f32, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(
            len,
            |i| |acc| {
                let d = _mm256_sub_ps(load(a.add(i)), load(b.add(i)));
                _mm256_fmadd_ps(d, d, acc)
            },
            |j| {
                let d = *a.add(j) - *b.add(j);
                d * d
            }
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(a: *const f32, b: *const f16, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(
            len,
            |i| |acc| _mm256_fmadd_ps(load(a.add(i)), load_f16(b.add(i)), acc),
            |j| *a.add(j) * (*b.add(j)).to_f32()
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn l2_f16(a: *const f32, b: *const f16, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(
            len,
            |i| |acc| {
                let d = _mm256_sub_ps(load(a.add(i)), load_f16(b.add(i)));
                _mm256_fmadd_ps(d, d, acc)
            },
            |j| {
                let d = *a.add(j) - (*b.add(j)).to_f32();
                d * d
            }
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn norm_f16(b: *const f16, len: usize) -> f32 {
    // SAFETY: the pointer addresses `len` values.
    unsafe {
        reduce_loop!(
            len,
            |i| |acc| {
                let v = load_f16(b.add(i));
                _mm256_fmadd_ps(v, v, acc)
            },
            |j| {
                let v = (*b.add(j)).to_f32();
                v * v
            }
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: both slices hold at least `len` values.
    unsafe { dot_f32(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: both slices hold at least `len` values.
    unsafe { l2_f32(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sq_dot(weights: &[f32], codes: &[u8]) -> f32 {
    let len = weights.len().min(codes.len());
    let (w, c) = (weights.as_ptr(), codes.as_ptr());
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(
            len,
            |i| |acc| _mm256_fmadd_ps(load(w.add(i)), load_u8(c.add(i)), acc),
            |j| *w.add(j) * f32::from(*c.add(j))
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sq_l2_squared(shifted: &[f32], scales: &[f32], codes: &[u8]) -> f32 {
    let len = shifted.len().min(scales.len()).min(codes.len());
    let (a, s, c) = (shifted.as_ptr(), scales.as_ptr(), codes.as_ptr());
    // SAFETY: the three pointers address `len` values.
    unsafe {
        reduce_loop!(
            len,
            |i| |acc| {
                let d = _mm256_fnmadd_ps(load(s.add(i)), load_u8(c.add(i)), load(a.add(i)));
                _mm256_fmadd_ps(d, d, acc)
            },
            |j| {
                let d = *a.add(j) - *s.add(j) * f32::from(*c.add(j));
                d * d
            }
        )
    }
}

macro_rules! batch {
    ($name:ident, $elem:ty, |$q:ident, $row:ident, $dim:ident| $body:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(query: &[f32], rows: &[$elem], out: &mut [f32]) {
            let $dim = query.len();
            if $dim == 0 {
                out.iter_mut().for_each(|v| *v = 0.0);
                return;
            }
            let $q = query.as_ptr();
            let _ = $q;
            for (o, chunk) in out.iter_mut().zip(rows.chunks_exact($dim)) {
                let $row = chunk.as_ptr();
                // SAFETY: the query and each chunk hold `dim` values.
                *o = unsafe { $body };
            }
        }
    };
}

batch!(dot_batch, f32, |q, row, dim| dot_f32(q, row, dim));
batch!(l2_squared_batch, f32, |q, row, dim| l2_f32(q, row, dim));
batch!(norm_squared_batch, f32, |q, row, dim| dot_f32(
    row, row, dim
));
batch!(dot_batch_f16, f16, |q, row, dim| dot_f16(q, row, dim));
batch!(l2_squared_batch_f16, f16, |q, row, dim| l2_f16(q, row, dim));
batch!(norm_squared_batch_f16, f16, |q, row, dim| norm_f16(
    row, dim
));

/// One register tile of `MR` queries by `NR` rows over the 8-lane body of `dim`; the remainder
/// lanes are added in scalar.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn micro<const MR: usize, const NR: usize>(
    q: *const f32,
    r: *const f32,
    dim: usize,
    out: *mut f32,
    out_stride: usize,
) {
    // SAFETY: `q` addresses MR query rows and `r` NR rows of `dim` values; `out` has MR rows of
    // at least NR values at `out_stride` apart.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let body = dim - dim % 8;
        let mut i = 0;
        while i < body {
            let mut rv = [_mm256_setzero_ps(); NR];
            for (j, v) in rv.iter_mut().enumerate() {
                *v = load(r.add(j * dim + i));
            }
            for (qi, row_acc) in acc.iter_mut().enumerate() {
                let qv = load(q.add(qi * dim + i));
                for (a, v) in row_acc.iter_mut().zip(rv.iter()) {
                    *a = _mm256_fmadd_ps(qv, *v, *a);
                }
            }
            i += 8;
        }
        for (qi, row_acc) in acc.iter().enumerate() {
            for (j, a) in row_acc.iter().enumerate() {
                let mut rest = 0.0f32;
                for k in body..dim {
                    rest += *q.add(qi * dim + k) * *r.add(j * dim + k);
                }
                *out.add(qi * out_stride + j) = hsum(*a) + rest;
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_tile(tile: Tile<'_>, out: &mut [f32], out_stride: usize) {
    const MR: usize = 3;
    const NR: usize = 4;
    let dim = tile.dim;
    let (qp, rp, op) = (tile.queries.as_ptr(), tile.rows.as_ptr(), out.as_mut_ptr());
    let mut qi = 0;
    while qi < tile.m {
        let mr = MR.min(tile.m - qi);
        let mut rj = 0;
        while rj < tile.n {
            let nr = NR.min(tile.n - rj);
            // SAFETY: the tile holds `m` queries and `n` rows of `dim` values, `out` holds
            // `m` rows of `out_stride >= n` values; mr/nr never pass those bounds.
            unsafe {
                let (q, r, o) = (
                    qp.add(qi * dim),
                    rp.add(rj * dim),
                    op.add(qi * out_stride + rj),
                );
                match (mr, nr) {
                    (3, 4) => micro::<3, 4>(q, r, dim, o, out_stride),
                    (2, 4) => micro::<2, 4>(q, r, dim, o, out_stride),
                    (_, 4) => micro::<1, 4>(q, r, dim, o, out_stride),
                    (m, n) => {
                        for a in 0..m {
                            for b in 0..n {
                                micro::<1, 1>(
                                    q.add(a * dim),
                                    r.add(b * dim),
                                    dim,
                                    o.add(a * out_stride + b),
                                    out_stride,
                                );
                            }
                        }
                    }
                }
            }
            rj += nr;
        }
        qi += mr;
    }
}
