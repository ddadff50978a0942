//! Distance kernels: the arithmetic under every vector function and k-NN operator.
//!
//! Each kernel exists as a scalar reference ([`scalar`]) and as explicit SIMD code (AVX-512 and
//! AVX2+FMA on x86_64, NEON on aarch64). [`kernels`] picks the best set once per process from the
//! CPU's features; every SIMD path is tested against the scalar reference. Vectors are stored as
//! `f32` or `f16` (converted to `f32` in registers, which halves the bytes read); queries are
//! always `f32`.
//!
//! Results differ from the scalar reference only by floating-point summation order.

use half::f16;
use std::sync::OnceLock;

pub mod gemm;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Euclidean distance `sqrt(sum((a - b)^2))`.
    L2,
    /// Cosine distance `1 - a.b / (|a| |b|)`; NaN when either vector is zero (as pgvector).
    Cosine,
    /// Inner product `a.b` (a similarity: larger is closer).
    InnerProduct,
    /// Negative inner product `-a.b` (a distance: smaller is closer).
    NegativeInnerProduct,
}

impl Metric {
    /// The metric's name as used in SQL and index definitions.
    pub fn name(&self) -> &'static str {
        match self {
            Self::L2 => "l2",
            Self::Cosine => "cosine",
            Self::InnerProduct => "inner_product",
            Self::NegativeInnerProduct => "negative_inner_product",
        }
    }

    /// The SQL function computing the metric (pgvector's name).
    pub fn function_name(&self) -> &'static str {
        match self {
            Self::L2 => "l2_distance",
            Self::Cosine => "cosine_distance",
            Self::InnerProduct => "inner_product",
            Self::NegativeInnerProduct => "negative_inner_product",
        }
    }

    /// Whether larger values mean closer (so nearest-first is `ORDER BY ... DESC`).
    pub fn is_similarity(&self) -> bool {
        matches!(self, Self::InnerProduct)
    }
}

/// Per-row kernels over contiguous rows of `dim` values: `out[i] = f(query, rows[i])`.
///
/// `rows.len()` must be `out.len() * query.len()`; callers guarantee it.
pub type BatchKernel<T> = fn(query: &[f32], rows: &[T], out: &mut [f32]);

/// A set of kernels for one instruction set.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    /// The instruction set's name (`avx512`, `avx2`, `neon`, `scalar`).
    pub name: &'static str,
    /// `sum(a * b)`.
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// `sum((a - b)^2)`.
    pub l2_squared: fn(&[f32], &[f32]) -> f32,
    /// Dot products of a query with `f32` rows.
    pub dot_batch: BatchKernel<f32>,
    /// Squared L2 distances of a query to `f32` rows.
    pub l2_squared_batch: BatchKernel<f32>,
    /// Squared norms of `f32` rows (the query argument is ignored apart from its length).
    pub norm_squared_batch: BatchKernel<f32>,
    /// Dot products of a query with `f16` rows.
    pub dot_batch_f16: BatchKernel<f16>,
    /// Squared L2 distances of a query to `f16` rows.
    pub l2_squared_batch_f16: BatchKernel<f16>,
    /// Squared norms of `f16` rows.
    pub norm_squared_batch_f16: BatchKernel<f16>,
    /// The register-tiled block kernel behind batched queries (see [`gemm`]).
    pub dot_tile: gemm::TileKernel,
    /// `sum(w * c)` of `f32` weights and a row of 8-bit codes: with `w = q * scale` (per
    /// dimension), the dot product of `q` with the row the codes stand for, less its offset's.
    pub sq_dot: fn(weights: &[f32], codes: &[u8]) -> f32,
    /// `sum((a - s * c)^2)` of a shifted query `a = q - offset`, the per-dimension scales `s`
    /// and a row of 8-bit codes: the squared L2 distance of `q` to the row the codes stand for.
    pub sq_l2_squared: fn(shifted: &[f32], scales: &[f32], codes: &[u8]) -> f32,
}

/// The scalar reference kernels, available on every CPU.
pub const SCALAR: Kernels = Kernels {
    name: "scalar",
    dot: scalar::dot,
    l2_squared: scalar::l2_squared,
    dot_batch: scalar::dot_batch,
    l2_squared_batch: scalar::l2_squared_batch,
    norm_squared_batch: scalar::norm_squared_batch,
    dot_batch_f16: scalar::dot_batch_f16,
    l2_squared_batch_f16: scalar::l2_squared_batch_f16,
    norm_squared_batch_f16: scalar::norm_squared_batch_f16,
    dot_tile: scalar::dot_tile,
    sq_dot: scalar::sq_dot,
    sq_l2_squared: scalar::sq_l2_squared,
};

/// Every kernel set this CPU can run, best first; the scalar reference is always last.
pub fn available() -> Vec<Kernels> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(k) = avx512::kernels() {
            out.push(k);
        }
        if let Some(k) = avx2::kernels() {
            out.push(k);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if let Some(k) = neon::kernels() {
            out.push(k);
        }
    }
    out.push(SCALAR);
    out
}

/// The best kernel set for this CPU, chosen once.
pub fn kernels() -> &'static Kernels {
    static BEST: OnceLock<Kernels> = OnceLock::new();
    BEST.get_or_init(|| available().into_iter().next().unwrap_or(SCALAR))
}

/// Distance (or similarity, for [`Metric::InnerProduct`]) between two `f32` vectors of equal
/// length.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    let k = kernels();
    match metric {
        Metric::L2 => (k.l2_squared)(a, b).sqrt(),
        Metric::InnerProduct => (k.dot)(a, b),
        Metric::NegativeInnerProduct => -(k.dot)(a, b),
        Metric::Cosine => {
            let ab = (k.dot)(a, b);
            let aa = (k.dot)(a, a);
            let bb = (k.dot)(b, b);
            cosine_from_parts(ab, aa, bb)
        }
    }
}

/// Cosine distance from a dot product and two squared norms.
#[inline]
pub fn cosine_from_parts(dot: f32, norm_sq_a: f32, norm_sq_b: f32) -> f32 {
    // Two square roots, not one of the product: the product of two squared norms overflows
    // (or underflows) f32 for vectors whose norms are only moderately large (or small).
    let denom = norm_sq_a.sqrt() * norm_sq_b.sqrt();
    if denom == 0.0 {
        f32::NAN
    } else {
        1.0 - dot / denom
    }
}

/// Element types vectors may be stored as.
pub trait VectorElement: Copy + Send + Sync + 'static {
    /// Dot-product batch kernel for this element type.
    fn dot_batch(k: &Kernels) -> BatchKernel<Self>;
    /// Squared-L2 batch kernel for this element type.
    fn l2_squared_batch(k: &Kernels) -> BatchKernel<Self>;
    /// Squared-norm batch kernel for this element type.
    fn norm_squared_batch(k: &Kernels) -> BatchKernel<Self>;
}

impl VectorElement for f32 {
    fn dot_batch(k: &Kernels) -> BatchKernel<Self> {
        k.dot_batch
    }
    fn l2_squared_batch(k: &Kernels) -> BatchKernel<Self> {
        k.l2_squared_batch
    }
    fn norm_squared_batch(k: &Kernels) -> BatchKernel<Self> {
        k.norm_squared_batch
    }
}

impl VectorElement for f16 {
    fn dot_batch(k: &Kernels) -> BatchKernel<Self> {
        k.dot_batch_f16
    }
    fn l2_squared_batch(k: &Kernels) -> BatchKernel<Self> {
        k.l2_squared_batch_f16
    }
    fn norm_squared_batch(k: &Kernels) -> BatchKernel<Self> {
        k.norm_squared_batch_f16
    }
}

/// Computes, for each row, the value k-NN orders by (smaller is closer): squared L2, cosine
/// distance, or negated dot product for both inner-product metrics. `scratch` is reused between
/// calls to hold row norms.
pub fn ordering_keys<T: VectorElement>(
    metric: Metric,
    query: &[f32],
    query_norm_sq: f32,
    rows: &[T],
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let k = kernels();
    match metric {
        Metric::L2 => T::l2_squared_batch(k)(query, rows, out),
        Metric::InnerProduct | Metric::NegativeInnerProduct => {
            T::dot_batch(k)(query, rows, out);
            out.iter_mut().for_each(|v| *v = -*v);
        }
        Metric::Cosine => {
            T::dot_batch(k)(query, rows, out);
            scratch.resize(out.len(), 0.0);
            T::norm_squared_batch(k)(query, rows, scratch);
            for (o, n) in out.iter_mut().zip(scratch.iter()) {
                *o = cosine_from_parts(*o, query_norm_sq, *n);
            }
        }
    }
}

/// Turns an ordering key from [`ordering_keys`] back into the metric's user-facing value.
#[inline]
pub fn key_to_value(metric: Metric, key: f32) -> f32 {
    match metric {
        Metric::L2 => key.sqrt(),
        Metric::Cosine | Metric::NegativeInnerProduct => key,
        Metric::InnerProduct => -key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f32, b: f32) -> bool {
        close_at_scale(a, b, a.abs().max(b.abs()))
    }

    /// Whether two sums agree to f32 rounding of terms whose magnitudes add up to `scale`: a
    /// sum whose terms cancel to near zero is judged by its terms, not by its small result.
    fn close_at_scale(a: f32, b: f32, scale: f32) -> bool {
        if a.is_nan() || b.is_nan() {
            return a.is_nan() && b.is_nan();
        }
        (a - b).abs() <= 1e-3 * (1.0 + scale)
    }

    /// A query of 1 to `max_dim` dimensions and 1 to `max_rows` rows of the same dimension.
    fn vectors(max_dim: usize, max_rows: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (1..=max_dim, 1..=max_rows).prop_flat_map(move |(dim, rows)| {
            (
                prop::collection::vec(-10.0f32..10.0, dim),
                prop::collection::vec(-10.0f32..10.0, dim * rows),
            )
        })
    }

    proptest! {
        #[test]
        fn simd_kernels_match_scalar((q, rows) in vectors(300, 40)) {
            let dim = q.len();
            let rows16: Vec<f16> = rows.iter().map(|v| f16::from_f32(*v)).collect();
            let rows16_as_f32: Vec<f32> = rows16.iter().map(|v| v.to_f32()).collect();
            let n = rows.len() / dim;
            for k in available() {
                prop_assert!(close((k.dot)(&q, &rows[..dim]), scalar::dot(&q, &rows[..dim])));
                prop_assert!(close((k.l2_squared)(&q, &rows[..dim]), scalar::l2_squared(&q, &rows[..dim])));
                let batches: [(BatchKernel<f32>, BatchKernel<f32>); 3] = [
                    (k.dot_batch, scalar::dot_batch),
                    (k.l2_squared_batch, scalar::l2_squared_batch),
                    (k.norm_squared_batch, scalar::norm_squared_batch),
                ];
                for (fast, reference) in batches {
                    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                    fast(&q, &rows, &mut a);
                    reference(&q, &rows, &mut b);
                    for (x, y) in a.iter().zip(&b) {
                        prop_assert!(close(*x, *y), "{}: {} vs {}", k.name, x, y);
                    }
                }
                let batches16: [(BatchKernel<f16>, BatchKernel<f32>); 3] = [
                    (k.dot_batch_f16, scalar::dot_batch),
                    (k.l2_squared_batch_f16, scalar::l2_squared_batch),
                    (k.norm_squared_batch_f16, scalar::norm_squared_batch),
                ];
                for (fast, reference) in batches16 {
                    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                    fast(&q, &rows16, &mut a);
                    reference(&q, &rows16_as_f32, &mut b);
                    for (x, y) in a.iter().zip(&b) {
                        prop_assert!(close(*x, *y), "{} f16: {} vs {}", k.name, x, y);
                    }
                }
            }
        }

        #[test]
        fn quantized_kernels_match_scalar(
            dim in 1usize..300, seed in any::<u64>()
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let weights: Vec<f32> = (0..dim).map(|_| rng.random_range(-10.0..10.0)).collect();
            let scales: Vec<f32> = (0..dim).map(|_| rng.random_range(0.0..0.1)).collect();
            // Every code value, the extremes included, turns up across the cases.
            let codes: Vec<u8> = (0..dim).map(|_| rng.random()).collect();
            for k in available() {
                let (fast, reference) = ((k.sq_dot)(&weights, &codes), scalar::sq_dot(&weights, &codes));
                let terms: f32 = weights.iter().zip(&codes).map(|(w, c)| (w * f32::from(*c)).abs()).sum();
                prop_assert!(close_at_scale(fast, reference, terms * 1e-2), "{} sq_dot: {} vs {}", k.name, fast, reference);
                let fast = (k.sq_l2_squared)(&weights, &scales, &codes);
                let reference = scalar::sq_l2_squared(&weights, &scales, &codes);
                prop_assert!(close(fast, reference), "{} sq_l2_squared: {} vs {}", k.name, fast, reference);
            }
        }

        #[test]
        fn tiled_dot_products_match_scalar(
            dim in 1usize..70, m in 1usize..20, n in 1usize..80, seed in any::<u64>()
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let queries: Vec<f32> = (0..m * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let rows: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            for k in available() {
                let mut out = vec![0.0; m * n];
                gemm::dot_products(k.dot_tile, &queries, &rows, dim, &mut out);
                for i in 0..m {
                    for j in 0..n {
                        let expected = scalar::dot(&queries[i * dim..(i + 1) * dim], &rows[j * dim..(j + 1) * dim]);
                        prop_assert!(close(out[i * n + j], expected), "{} ({i},{j})", k.name);
                    }
                }
            }
        }
    }

    #[test]
    fn cosine_of_a_zero_vector_is_nan() {
        let zero = [0.0f32; 7];
        let other = [1.0f32; 7];
        assert!(distance(Metric::Cosine, &zero, &other).is_nan());
        assert!(distance(Metric::Cosine, &other, &zero).is_nan());
        assert!(close(distance(Metric::Cosine, &other, &other), 0.0));
    }

    #[test]
    fn cosine_of_large_and_small_vectors_neither_overflows_nor_underflows() {
        for scale in [1e12f32, 1e-12] {
            let a = [3.0 * scale, 4.0 * scale];
            let b = [6.0 * scale, 8.0 * scale];
            let d = distance(Metric::Cosine, &a, &b);
            assert!(d.abs() < 1e-5, "scale {scale}: {d}");
        }
    }

    #[test]
    fn metrics_match_their_definitions() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [4.0f32, 6.0, 3.0];
        assert!(close(distance(Metric::L2, &a, &b), 5.0));
        assert!(close(distance(Metric::InnerProduct, &a, &b), 25.0));
        assert!(close(distance(Metric::NegativeInnerProduct, &a, &b), -25.0));
        let expected = 1.0 - 25.0 / (14.0f32.sqrt() * 61.0f32.sqrt());
        assert!(close(distance(Metric::Cosine, &a, &b), expected));
    }

    #[test]
    fn ordering_keys_round_trip_to_values() {
        let q = [1.0f32, 0.0, 2.0];
        let rows = [1.0f32, 1.0, 1.0, -2.0, 0.5, 0.0];
        for metric in [
            Metric::L2,
            Metric::Cosine,
            Metric::InnerProduct,
            Metric::NegativeInnerProduct,
        ] {
            let mut keys = vec![0.0; 2];
            let mut scratch = Vec::new();
            ordering_keys(metric, &q, 5.0, &rows, &mut keys, &mut scratch);
            for (i, key) in keys.iter().enumerate() {
                let expected = distance(metric, &q, &rows[i * 3..(i + 1) * 3]);
                assert!(close(key_to_value(metric, *key), expected), "{metric:?}");
            }
        }
    }

    #[test]
    fn the_best_kernels_are_chosen_once() {
        let a = kernels() as *const Kernels;
        let b = kernels() as *const Kernels;
        assert_eq!(a, b);
        assert_eq!(kernels().name, available()[0].name);
    }
}
