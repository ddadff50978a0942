//! Scalar reference kernels: the definition every SIMD kernel is tested against.

use half::f16;

/// `sum(a * b)`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `sum((a - b)^2)`.
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x - y;
            d * d
        })
        .sum()
}

fn rows_of<'a, T>(query: &[f32], rows: &'a [T]) -> impl Iterator<Item = &'a [T]> {
    rows.chunks_exact(query.len().max(1))
}

/// Dot products of `query` with each row.
pub fn dot_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows_of(query, rows)) {
        *o = dot(query, row);
    }
}

/// Squared L2 distances of `query` to each row.
pub fn l2_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows_of(query, rows)) {
        *o = l2_squared(query, row);
    }
}

/// Squared norms of each row.
pub fn norm_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows_of(query, rows)) {
        *o = dot(row, row);
    }
}

/// Dot products of `query` with each `f16` row.
pub fn dot_batch_f16(query: &[f32], rows: &[f16], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows_of(query, rows)) {
        *o = query.iter().zip(row).map(|(q, r)| q * r.to_f32()).sum();
    }
}

/// Squared L2 distances of `query` to each `f16` row.
pub fn l2_squared_batch_f16(query: &[f32], rows: &[f16], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows_of(query, rows)) {
        *o = query
            .iter()
            .zip(row)
            .map(|(q, r)| {
                let d = q - r.to_f32();
                d * d
            })
            .sum();
    }
}

/// Squared norms of each `f16` row.
pub fn norm_squared_batch_f16(query: &[f32], rows: &[f16], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows_of(query, rows)) {
        *o = row.iter().map(|r| r.to_f32() * r.to_f32()).sum();
    }
}

/// `sum(w * c)`: weights against a row of 8-bit codes (see [`super::Kernels::sq_dot`]).
pub fn sq_dot(weights: &[f32], codes: &[u8]) -> f32 {
    weights
        .iter()
        .zip(codes)
        .map(|(w, c)| w * f32::from(*c))
        .sum()
}

/// `sum((a - s * c)^2)`: a shifted query against a row of 8-bit codes and their scales (see
/// [`super::Kernels::sq_l2_squared`]).
pub fn sq_l2_squared(shifted: &[f32], scales: &[f32], codes: &[u8]) -> f32 {
    shifted
        .iter()
        .zip(scales)
        .zip(codes)
        .map(|((a, s), c)| {
            let d = a - s * f32::from(*c);
            d * d
        })
        .sum()
}

/// Reference tile kernel: see [`super::gemm::TileKernel`].
pub fn dot_tile(tile: super::gemm::Tile<'_>, out: &mut [f32], out_stride: usize) {
    let dim = tile.dim;
    for i in 0..tile.m {
        let q = &tile.queries[i * dim..(i + 1) * dim];
        for j in 0..tile.n {
            out[i * out_stride + j] = dot(q, &tile.rows[j * dim..(j + 1) * dim]);
        }
    }
}
