//! AVX-512 kernels (x86_64 with `avx512f`, `avx512bw` and `avx512vl`): 16 lanes, masked loads for the tail, so every
//! dimension is handled without a scalar remainder loop.

use std::arch::x86_64::*;

use half::f16;

use super::gemm::Tile;
use super::Kernels;

/// The AVX-512 kernel set, if the CPU has AVX-512F.
pub(super) fn kernels() -> Option<Kernels> {
    if !(is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl"))
    {
        return None;
    }
    Some(Kernels {
        name: "avx512",
        // SAFETY (all entries): the wrappers only call AVX-512 code, and this set is only built
        // after the features were detected above.
        dot: |a, b| unsafe { dot(a, b) },
        l2_squared: |a, b| unsafe { l2_squared(a, b) },
        dot_batch: |q, r, o| unsafe { dot_batch(q, r, o) },
        l2_squared_batch: |q, r, o| unsafe { l2_squared_batch(q, r, o) },
        norm_squared_batch: |q, r, o| unsafe { norm_squared_batch(q, r, o) },
        dot_batch_f16: |q, r, o| unsafe { dot_batch_f16(q, r, o) },
        l2_squared_batch_f16: |q, r, o| unsafe { l2_squared_batch_f16(q, r, o) },
        norm_squared_batch_f16: |q, r, o| unsafe { norm_squared_batch_f16(q, r, o) },
        dot_tile: |t, o, s| unsafe { dot_tile(t, o, s) },
    })
}

#[inline(always)]
fn tail_mask(remaining: usize) -> __mmask16 {
    ((1u32 << remaining.min(16)) - 1) as __mmask16
}

/// Loads 16 `f32` (masked past `len`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load(ptr: *const f32, i: usize, len: usize) -> __m512 {
    // SAFETY: the mask only enables lanes below `len`, all inside the slice.
    unsafe {
        if i + 16 <= len {
            _mm512_loadu_ps(ptr.add(i))
        } else {
            _mm512_maskz_loadu_ps(tail_mask(len - i), ptr.add(i))
        }
    }
}

/// Loads 16 `f16` (masked past `len`) and widens them to `f32`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load_f16(ptr: *const f16, i: usize, len: usize) -> __m512 {
    // SAFETY: the mask only enables lanes below `len`, all inside the slice; f16 is 2 bytes.
    unsafe {
        let halves = if i + 16 <= len {
            _mm256_loadu_si256(ptr.add(i) as *const __m256i)
        } else {
            _mm256_maskz_loadu_epi16(tail_mask(len - i), ptr.add(i) as *const i16)
        };
        _mm512_cvtph_ps(halves)
    }
}

macro_rules! reduce_loop {
    ($len:expr, |$i:ident| $body:expr) => {{
        let len = $len;
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut $i = 0;
        while $i + 32 <= len {
            acc0 = $body(acc0);
            $i += 16;
            acc1 = $body(acc1);
            $i += 16;
        }
        while $i < len {
            acc0 = $body(acc0);
            $i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }};
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_f32(a: *const f32, b: *const f32, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(len, |i| |acc| _mm512_fmadd_ps(
            load(a, i, len),
            load(b, i, len),
            acc
        ))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn l2_f32(a: *const f32, b: *const f32, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(len, |i| |acc| {
            let d = _mm512_sub_ps(load(a, i, len), load(b, i, len));
            _mm512_fmadd_ps(d, d, acc)
        })
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_f16(a: *const f32, b: *const f16, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(len, |i| |acc| _mm512_fmadd_ps(
            load(a, i, len),
            load_f16(b, i, len),
            acc
        ))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn l2_f16(a: *const f32, b: *const f16, len: usize) -> f32 {
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(len, |i| |acc| {
            let d = _mm512_sub_ps(load(a, i, len), load_f16(b, i, len));
            _mm512_fmadd_ps(d, d, acc)
        })
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn norm_f16(b: *const f16, len: usize) -> f32 {
    // SAFETY: the pointer addresses `len` values.
    unsafe {
        reduce_loop!(len, |i| |acc| {
            let v = load_f16(b, i, len);
            _mm512_fmadd_ps(v, v, acc)
        })
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: both slices hold at least `len` values.
    unsafe { dot_f32(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: both slices hold at least `len` values.
    unsafe { l2_f32(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
}

macro_rules! batch {
    ($name:ident, $elem:ty, |$q:ident, $row:ident, $dim:ident| $body:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
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

/// One register tile: `MR` queries by `NR` rows, `MR * NR` accumulators.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
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
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        let mut i = 0;
        while i < dim {
            let mut rv = [_mm512_setzero_ps(); NR];
            for (j, v) in rv.iter_mut().enumerate() {
                *v = load(r.add(j * dim), i, dim);
            }
            for (qi, row_acc) in acc.iter_mut().enumerate() {
                let qv = load(q.add(qi * dim), i, dim);
                for (a, v) in row_acc.iter_mut().zip(rv.iter()) {
                    *a = _mm512_fmadd_ps(qv, *v, *a);
                }
            }
            i += 16;
        }
        for (qi, row_acc) in acc.iter().enumerate() {
            for (j, a) in row_acc.iter().enumerate() {
                *out.add(qi * out_stride + j) = _mm512_reduce_add_ps(*a);
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_tile(tile: Tile<'_>, out: &mut [f32], out_stride: usize) {
    const MR: usize = 4;
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
                    (4, 4) => micro::<4, 4>(q, r, dim, o, out_stride),
                    (4, 3) => micro::<4, 3>(q, r, dim, o, out_stride),
                    (4, 2) => micro::<4, 2>(q, r, dim, o, out_stride),
                    (4, _) => micro::<4, 1>(q, r, dim, o, out_stride),
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
