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
        sq_dot: |w, c| unsafe { sq_dot(w, c) },
        sq_l2_squared: |a, s, c| unsafe { sq_l2_squared(a, s, c) },
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

/// Loads 16 `u8` (masked past `len`) and widens them to `f32`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load_u8(ptr: *const u8, i: usize, len: usize) -> __m512 {
    // SAFETY: the mask only enables lanes below `len`, all inside the slice.
    unsafe {
        let bytes = if i + 16 <= len {
            _mm_loadu_si128(ptr.add(i) as *const __m128i)
        } else {
            _mm_maskz_loadu_epi8(tail_mask(len - i), ptr.add(i) as *const i8)
        };
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes))
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
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: both slices hold at least `len` values.
    unsafe { dot_f32(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: both slices hold at least `len` values.
    unsafe { l2_f32(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn sq_dot(weights: &[f32], codes: &[u8]) -> f32 {
    let len = weights.len().min(codes.len());
    let (w, c) = (weights.as_ptr(), codes.as_ptr());
    // SAFETY: both pointers address `len` values.
    unsafe {
        reduce_loop!(len, |i| |acc| _mm512_fmadd_ps(
            load(w, i, len),
            load_u8(c, i, len),
            acc
        ))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn sq_l2_squared(shifted: &[f32], scales: &[f32], codes: &[u8]) -> f32 {
    let len = shifted.len().min(scales.len()).min(codes.len());
    let (a, s, c) = (shifted.as_ptr(), scales.as_ptr(), codes.as_ptr());
    // SAFETY: the three pointers address `len` values.
    unsafe {
        reduce_loop!(len, |i| |acc| {
            let d = _mm512_fnmadd_ps(load(s, i, len), load_u8(c, i, len), load(a, i, len));
            _mm512_fmadd_ps(d, d, acc)
        })
    }
}

/// How far ahead of the row being read the one-query kernels have prefetched, in bytes.
///
/// The kernels read rows in order and prefetch (into L2) every cache line up to this distance
/// past the end of the current row. `benchmarks/compare/run.sh` times the kernel alone against a
/// plain read of the same rows ("the distance kernel alone"). The distance and the L2 hint were
/// chosen with a standalone timing loop over 512 MB of rows (not in the repository) against
/// 1 and 3 KiB and L1 and non-temporal hints.
const PREFETCH_AHEAD: usize = 2048;

/// A kernel of one query against many rows: `$step` folds one 16-lane chunk `$x` of a row (and
/// the same chunk `$q` of the query) into the accumulator `$acc`.
///
/// Rows are read strictly in order, each with two accumulators (alternate chunks) so that two
/// chains of dependent FMAs overlap, and a software prefetch runs [`PREFETCH_AHEAD`] bytes ahead
/// of the reads. (Blocks of 16 rows summed together with a transposing reduction save
/// horizontal sums, but their loads stride across the rows, and the one-query scan of the
/// comparison harness was slower with them: 1.60x of the read, against 1.02-1.14x now; see
/// `benchmarks/README.md`.)
macro_rules! batch {
    ($name:ident, $elem:ty, $load_row:ident, |$q:ident, $x:ident, $acc:ident| $step:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn $name(query: &[f32], rows: &[$elem], out: &mut [f32]) {
            let dim = query.len();
            if dim == 0 {
                out.iter_mut().for_each(|v| *v = 0.0);
                return;
            }
            let n = out.len().min(rows.len() / dim);
            let (q, rows_ptr) = (query.as_ptr(), rows.as_ptr());
            // Prefetches never fault; `wrapping_add` makes no out-of-bounds pointer.
            let end = rows_ptr.wrapping_add(n * dim) as *const i8;
            let mut prefetched = rows_ptr as *const i8;
            // SAFETY: every row read is below `n <= rows.len() / dim`, every chunk load is masked
            // to `dim`, and every store is below `n <= out.len()`.
            unsafe {
                for (r, o) in out[..n].iter_mut().enumerate() {
                    let row = rows_ptr.add(r * dim);
                    let horizon = (row.add(dim) as *const i8)
                        .wrapping_add(PREFETCH_AHEAD)
                        .min(end);
                    while prefetched < horizon {
                        _mm_prefetch::<_MM_HINT_T1>(prefetched);
                        prefetched = prefetched.wrapping_add(64);
                    }
                    // Folds the chunk at `i` of this row into `$acc` (the closure inherits the
                    // target features).
                    let fold = |$acc: __m512, i: usize| {
                        let $q = load(q, i, dim);
                        let _ = $q;
                        let $x = $load_row(row, i, dim);
                        $step
                    };
                    let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                    let mut i = 0;
                    while i + 32 <= dim {
                        even = fold(even, i);
                        odd = fold(odd, i + 16);
                        i += 32;
                    }
                    if i < dim {
                        even = fold(even, i);
                    }
                    if i + 16 < dim {
                        odd = fold(odd, i + 16);
                    }
                    *o = _mm512_reduce_add_ps(_mm512_add_ps(even, odd));
                }
            }
        }
    };
}

batch!(dot_batch, f32, load, |q, x, acc| _mm512_fmadd_ps(x, q, acc));
batch!(l2_squared_batch, f32, load, |q, x, acc| {
    let d = _mm512_sub_ps(x, q);
    _mm512_fmadd_ps(d, d, acc)
});
batch!(norm_squared_batch, f32, load, |q, x, acc| _mm512_fmadd_ps(
    x, x, acc
));
batch!(dot_batch_f16, f16, load_f16, |q, x, acc| _mm512_fmadd_ps(
    x, q, acc
));
batch!(l2_squared_batch_f16, f16, load_f16, |q, x, acc| {
    let d = _mm512_sub_ps(x, q);
    _mm512_fmadd_ps(d, d, acc)
});
batch!(norm_squared_batch_f16, f16, load_f16, |q, x, acc| {
    _mm512_fmadd_ps(x, x, acc)
});

/// Rows per packed panel: one register of lanes, each lane a different row.
const PANEL: usize = 16;

/// Copies `n` rows of `dim` values into panels of [`PANEL`] rows stored dimension-major
/// (`packed[(p * dim + d) * PANEL + lane]` is value `d` of row `p * PANEL + lane`; missing rows
/// of the last panel are zero), so that one load gives one dimension of 16 rows.
fn pack_panels(rows: &[f32], n: usize, dim: usize, packed: &mut Vec<f32>) {
    packed.clear();
    packed.resize(n.div_ceil(PANEL) * dim * PANEL, 0.0);
    for (j, row) in rows.chunks_exact(dim).take(n).enumerate() {
        let panel = &mut packed[(j / PANEL) * dim * PANEL..][..dim * PANEL];
        for (d, value) in row.iter().enumerate() {
            panel[d * PANEL + j % PANEL] = *value;
        }
    }
}

/// One register tile: `MR` queries by `NP` panels (`NP * 16` rows), `MR * NP` accumulators,
/// each holding 16 rows' dot products with one query, so no horizontal sum is needed.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn micro<const MR: usize, const NP: usize>(
    q: *const f32,
    panels: *const f32,
    dim: usize,
    rows: usize,
    out: *mut f32,
    out_stride: usize,
) {
    // SAFETY: `q` addresses MR query rows of `dim` values, `panels` NP packed panels of
    // `dim * PANEL` values; `out` has MR rows of at least `rows` (<= NP * PANEL) values at
    // `out_stride` apart, and only those are written.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NP]; MR];
        for d in 0..dim {
            let mut rv = [_mm512_setzero_ps(); NP];
            for (p, v) in rv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(panels.add((p * dim + d) * PANEL));
            }
            for (qi, row_acc) in acc.iter_mut().enumerate() {
                let qv = _mm512_set1_ps(*q.add(qi * dim + d));
                for (a, v) in row_acc.iter_mut().zip(rv.iter()) {
                    *a = _mm512_fmadd_ps(qv, *v, *a);
                }
            }
        }
        for (qi, row_acc) in acc.iter().enumerate() {
            for (p, a) in row_acc.iter().enumerate() {
                let valid = rows.saturating_sub(p * PANEL).min(PANEL);
                if valid > 0 {
                    _mm512_mask_storeu_ps(
                        out.add(qi * out_stride + p * PANEL),
                        tail_mask(valid),
                        *a,
                    );
                }
            }
        }
    }
}

/// Dispatches `mr` (1..=8) queries by `NP` panels to the matching [`micro`] instance.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn micro_rows<const NP: usize>(
    mr: usize,
    q: *const f32,
    panels: *const f32,
    dim: usize,
    rows: usize,
    out: *mut f32,
    out_stride: usize,
) {
    // SAFETY: as for `micro`, with `mr` queries.
    unsafe {
        match mr {
            8 => micro::<8, NP>(q, panels, dim, rows, out, out_stride),
            7 => micro::<7, NP>(q, panels, dim, rows, out, out_stride),
            6 => micro::<6, NP>(q, panels, dim, rows, out, out_stride),
            5 => micro::<5, NP>(q, panels, dim, rows, out, out_stride),
            4 => micro::<4, NP>(q, panels, dim, rows, out, out_stride),
            3 => micro::<3, NP>(q, panels, dim, rows, out, out_stride),
            2 => micro::<2, NP>(q, panels, dim, rows, out, out_stride),
            _ => micro::<1, NP>(q, panels, dim, rows, out, out_stride),
        }
    }
}

/// The tile's rows packed into panels once, then every query block of 8 passes over them two
/// panels (32 rows) at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_tile(tile: Tile<'_>, out: &mut [f32], out_stride: usize) {
    const MR: usize = 8;
    const NP: usize = 2;
    let dim = tile.dim;
    let mut packed = Vec::new();
    pack_panels(tile.rows, tile.n, dim, &mut packed);
    let (qp, pp, op) = (tile.queries.as_ptr(), packed.as_ptr(), out.as_mut_ptr());
    let mut qi = 0;
    while qi < tile.m {
        let mr = MR.min(tile.m - qi);
        let mut rj = 0;
        while rj < tile.n {
            let rows = (NP * PANEL).min(tile.n - rj);
            // SAFETY: the tile holds `m` queries of `dim` values, `packed` every panel of its
            // `n` rows, and `out` `m` rows of `out_stride >= n` values; `mr` queries and `rows`
            // rows from (qi, rj) stay inside those bounds.
            unsafe {
                let (q, p, o) = (
                    qp.add(qi * dim),
                    pp.add(rj * dim),
                    op.add(qi * out_stride + rj),
                );
                if rows > PANEL {
                    micro_rows::<2>(mr, q, p, dim, rows, o, out_stride);
                } else {
                    micro_rows::<1>(mr, q, p, dim, rows, o, out_stride);
                }
            }
            rj += rows;
        }
        qi += mr;
    }
}
