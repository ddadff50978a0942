//! An 8-bit scalar-quantized copy of a set of vectors, scored against `f32` queries.
//!
//! Each dimension `d` is mapped linearly from the range of its finite values `[min_d, max_d]`
//! onto the codes `0..=255`, so that `x_d ≈ min_d + scale_d * code_d`: a row costs one byte a
//! dimension, a quarter of `f32`. A graph search waits on memory, not arithmetic, so the beam of a
//! loaded HNSW search scores these codes (two cache lines a node at 128 dimensions, not eight)
//! and then re-scores the nodes it found at full precision, as FAISS's `IndexHNSWSQ` behind a
//! refine step and Milvus's `HNSW_SQ` with `refine` do. Per-dimension ranges (FAISS's
//! `QT_8bit`) keep dimensions of small range from losing their precision to one wide one.

use lance_linalg::distance::DistanceType;

use crate::distance::{kernels, Kernels};
use crate::index::huge_pages::HugePageArray;

/// Vectors of `dim` values as one row of 8-bit codes each, aligned for the cache.
#[derive(Debug)]
pub(crate) struct ScalarQuantized {
    dim: usize,
    /// The rows' codes, `dim` bytes a row.
    codes: HugePageArray<u8>,
    /// Each dimension's smallest finite value (the value of code 0).
    offsets: Vec<f32>,
    /// Each dimension's step between two codes.
    scales: Vec<f32>,
    /// What the scores approximate.
    distance_type: DistanceType,
}

/// A query prepared for scoring [`ScalarQuantized`] rows.
pub(crate) struct QuantizedQuery<'a> {
    vectors: &'a ScalarQuantized,
    kernels: &'static Kernels,
    /// For L2, the query less the offsets; otherwise the query (unit length for cosine) times
    /// the scales.
    weights: Vec<f32>,
    /// For dot and cosine, the query's dot product with the offsets.
    bias: f32,
}

impl ScalarQuantized {
    /// `values` (rows of `dim` values) quantized for `distance_type`: a cosine index's vectors
    /// are scaled to unit length first (by `norms`, their squared norms, which a cosine search
    /// keeps anyway), so that their dot product with the query ranks them.
    pub(crate) fn new(
        values: &[f32],
        dim: usize,
        distance_type: DistanceType,
        norms: Option<&[f32]>,
    ) -> Self {
        // Rows of no values have no codes; `max` keeps `chunks_exact` from a step of 0.
        let step = dim.max(1);
        let rows = values.len() / step;
        let factors: Vec<f32> = match (distance_type, norms) {
            (DistanceType::Cosine, Some(norms)) => norms
                .iter()
                .map(|n| {
                    let norm = n.sqrt();
                    if norm > 0.0 && norm.is_finite() {
                        1.0 / norm
                    } else {
                        1.0
                    }
                })
                .collect(),
            _ => vec![1.0; rows],
        };
        let mut low = vec![f32::INFINITY; dim];
        let mut high = vec![f32::NEG_INFINITY; dim];
        for (row, factor) in values.chunks_exact(step).zip(&factors) {
            for ((v, lo), hi) in row.iter().zip(&mut low).zip(&mut high) {
                let v = v * factor;
                if v.is_finite() {
                    *lo = lo.min(v);
                    *hi = hi.max(v);
                }
            }
        }
        let offsets: Vec<f32> = low
            .iter()
            .map(|lo| if lo.is_finite() { *lo } else { 0.0 })
            .collect();
        let scales: Vec<f32> = high
            .iter()
            .zip(&offsets)
            .map(|(hi, lo)| {
                if hi.is_finite() {
                    (hi - lo) / 255.0
                } else {
                    0.0
                }
            })
            .collect();
        let mut codes = HugePageArray::zeroed(rows * dim);
        for ((out, row), factor) in codes
            .chunks_exact_mut(step)
            .zip(values.chunks_exact(step))
            .zip(&factors)
        {
            for (((code, v), lo), scale) in out.iter_mut().zip(row).zip(&offsets).zip(&scales) {
                // `as` saturates: NaN becomes 0, values past the range its ends.
                *code = if *scale > 0.0 {
                    ((v * factor - lo) / scale).round() as u8
                } else {
                    0
                };
            }
        }
        Self {
            dim,
            codes,
            offsets,
            scales,
            distance_type,
        }
    }

    /// The codes of the row at `position`.
    #[inline]
    pub(crate) fn codes(&self, position: usize) -> &[u8] {
        &self.codes[position * self.dim..(position + 1) * self.dim]
    }

    /// Bytes the codes and their ranges hold.
    pub(crate) fn size_bytes(&self) -> usize {
        self.codes.size_bytes() + (self.offsets.len() + self.scales.len()) * 4
    }

    /// `query` (of `dim` values) prepared for [`QuantizedQuery::score`].
    pub(crate) fn query(&self, query: &[f32]) -> QuantizedQuery<'_> {
        let k = kernels();
        let (weights, bias) = match self.distance_type {
            DistanceType::L2 => {
                let shifted = query.iter().zip(&self.offsets).map(|(q, o)| q - o);
                (shifted.collect(), 0.0)
            }
            _ => {
                let norm = (k.dot)(query, query).sqrt();
                let factor = match self.distance_type {
                    DistanceType::Cosine if norm > 0.0 => 1.0 / norm,
                    _ => 1.0,
                };
                let weights = query.iter().zip(&self.scales).map(|(q, s)| q * factor * s);
                let bias = (k.dot)(query, &self.offsets) * factor;
                (weights.collect(), bias)
            }
        };
        QuantizedQuery {
            vectors: self,
            kernels: k,
            weights,
            bias,
        }
    }
}

impl QuantizedQuery<'_> {
    /// The approximate score of the row at `position`, on the scale of the exact one: the
    /// squared L2 distance, the cosine distance, or the negative dot product.
    #[inline]
    pub(crate) fn score(&self, position: usize) -> f32 {
        let vectors = self.vectors;
        let codes = vectors.codes(position);
        match vectors.distance_type {
            DistanceType::Cosine => 1.0 - (self.bias + (self.kernels.sq_dot)(&self.weights, codes)),
            DistanceType::Dot => -(self.bias + (self.kernels.sq_dot)(&self.weights, codes)),
            _ => (self.kernels.sq_l2_squared)(&self.weights, &vectors.scales, codes),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::distance::{distance, Metric};

    /// `n` random rows of `dim` values, each dimension with its own range.
    fn rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let spans: Vec<f32> = (0..dim).map(|_| rng.random_range(0.01..5.0)).collect();
        (0..n * dim)
            .map(|i| rng.random_range(-1.0..1.0) * spans[i % dim])
            .collect()
    }

    /// The largest error of a reconstructed row: half a step in each dimension.
    fn reconstruction_error(quantized: &ScalarQuantized) -> f32 {
        quantized
            .scales
            .iter()
            .map(|s| (s / 2.0) * (s / 2.0))
            .sum::<f32>()
            .sqrt()
    }

    #[test]
    fn l2_scores_are_within_the_quantization_error_of_the_exact_distance() {
        let dim = 37;
        let values = rows(200, dim, 1);
        let quantized = ScalarQuantized::new(&values, dim, DistanceType::L2, None);
        let error = reconstruction_error(&quantized);
        let query = &rows(1, dim, 2);
        let prepared = quantized.query(query);
        for (position, row) in values.chunks_exact(dim).enumerate() {
            let exact = distance(Metric::L2, query, row);
            let approx = prepared.score(position).sqrt();
            // The triangle inequality: the reconstruction moves a row by at most `error`.
            assert!(
                (approx - exact).abs() <= error * 1.001 + 1e-4,
                "row {position}: {approx} against {exact} (error bound {error})"
            );
        }
    }

    #[test]
    fn dot_and_cosine_scores_are_within_the_quantization_error_of_the_exact_ones() {
        let dim = 50;
        let values = rows(200, dim, 3);
        let query = &rows(1, dim, 4);
        let query_norm = distance(Metric::InnerProduct, query, query).sqrt();
        for (distance_type, metric) in [
            (DistanceType::Dot, Metric::NegativeInnerProduct),
            (DistanceType::Cosine, Metric::Cosine),
        ] {
            let norms: Vec<f32> = values
                .chunks_exact(dim)
                .map(|row| distance(Metric::InnerProduct, row, row))
                .collect();
            let quantized = ScalarQuantized::new(&values, dim, distance_type, Some(&norms));
            let error = reconstruction_error(&quantized);
            let prepared = quantized.query(query);
            // Cauchy-Schwarz: the reconstruction moves a row (of unit length, for cosine) by at
            // most `error`, so the dot product with the (unit, for cosine) query moves by at
            // most `error` times the query's length.
            let bound = match distance_type {
                DistanceType::Cosine => error,
                _ => error * query_norm,
            };
            for (position, row) in values.chunks_exact(dim).enumerate() {
                let exact = distance(metric, query, row);
                let approx = prepared.score(position);
                assert!(
                    (approx - exact).abs() <= bound * 1.001 + 1e-4,
                    "{metric:?} row {position}: {approx} against {exact} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn codes_span_each_dimension_and_a_constant_dimension_is_exact() {
        // Dimension 0 is constant, dimension 1 runs from -2 to 6 (a code a 8/255 step).
        let values = [3.0, -2.0, 3.0, 6.0, 3.0, 0.0];
        let quantized = ScalarQuantized::new(&values, 2, DistanceType::L2, None);
        assert_eq!(quantized.codes(0), &[0, 0]);
        assert_eq!(quantized.codes(1), &[0, 255]);
        assert_eq!(quantized.codes(2), &[0, 64]);
        let prepared = quantized.query(&[3.0, 6.0]);
        assert!(prepared.score(1).abs() < 1e-6);
        assert!((prepared.score(0) - 64.0).abs() < 1e-3);
    }

    #[test]
    fn non_finite_values_neither_panic_nor_widen_the_ranges() {
        let values = [f32::NAN, 1.0, f32::INFINITY, 3.0, 0.0, f32::NEG_INFINITY];
        let quantized = ScalarQuantized::new(&values, 2, DistanceType::L2, None);
        assert_eq!(quantized.offsets, vec![0.0, 1.0]);
        assert_eq!(quantized.scales, vec![0.0, 2.0 / 255.0]);
        assert_eq!(quantized.codes(1), &[0, 255]);
        assert_eq!(quantized.codes(2), &[0, 0]);
    }

    #[test]
    fn codes_are_aligned_to_cache_lines() {
        let values = rows(10, 16, 5);
        let quantized = ScalarQuantized::new(&values, 16, DistanceType::L2, None);
        assert_eq!(quantized.codes(0).as_ptr() as usize % 64, 0);
    }
}
