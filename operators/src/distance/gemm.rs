//! Blocked dot products of many queries with many rows: the matrix product `Q * R^T` behind
//! batched k-NN.
//!
//! [`dot_products`] cuts the rows into cache-sized blocks so that each block is read from memory
//! once for all queries, and hands each block to a [`TileKernel`], which register-tiles it
//! (several queries by several rows of accumulators per step in the SIMD kernels; the AVX-512
//! kernel packs the block's rows into 16-row panels first).

/// A block of the product: `m` queries by `n` rows, both of `dim` values, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Tile<'a> {
    /// `m * dim` query values.
    pub queries: &'a [f32],
    /// `n * dim` row values.
    pub rows: &'a [f32],
    /// Number of queries.
    pub m: usize,
    /// Number of rows.
    pub n: usize,
    /// Vector length.
    pub dim: usize,
}

/// Computes `out[i * out_stride + j] = queries[i] . rows[j]` for the whole tile.
pub type TileKernel = fn(tile: Tile<'_>, out: &mut [f32], out_stride: usize);

/// Rows per cache block: 64 KiB of 128-dimensional `f32` rows, so a block stays in L2 while every
/// query passes over it.
fn block_rows(dim: usize) -> usize {
    ((64 * 1024) / (dim.max(1) * 4)).clamp(8, 1024)
}

/// Dot products of every query with every row: `out` is `m x n` row-major, where
/// `m = queries.len() / dim` and `n = rows.len() / dim`.
pub fn dot_products(
    kernel: TileKernel,
    queries: &[f32],
    rows: &[f32],
    dim: usize,
    out: &mut [f32],
) {
    if dim == 0 {
        out.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let m = queries.len() / dim;
    let n = rows.len() / dim;
    let block = block_rows(dim);
    let mut start = 0;
    while start < n {
        let len = block.min(n - start);
        let tile = Tile {
            queries,
            rows: &rows[start * dim..(start + len) * dim],
            m,
            n: len,
            dim,
        };
        kernel(tile, &mut out[start..], n);
        start += len;
    }
}
