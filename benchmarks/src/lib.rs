//! Deterministic data for Quiver's benchmarks: the same seed gives the same vectors on every
//! run and machine, so figures from different runs compare.

use rand::{Rng, SeedableRng};

/// `n` vectors of `dim` values uniform in [-1, 1), row-major.
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `n` vectors of `dim` values around `clusters` random centres (spread 0.1), row-major: data
/// with structure, on which an index behaves as on real embeddings.
pub fn clustered_vectors(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let centres = random_vectors(clusters.max(1), dim, seed ^ 0x9e37_79b9);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters.max(1));
        for d in 0..dim {
            out.push(centres[c * dim + d] + rng.random_range(-0.1..0.1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic() {
        assert_eq!(random_vectors(3, 4, 7), random_vectors(3, 4, 7));
        assert_ne!(random_vectors(3, 4, 7), random_vectors(3, 4, 8));
        assert_eq!(clustered_vectors(5, 3, 2, 1).len(), 15);
    }
}
