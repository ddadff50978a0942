//! Deterministic data for Quiver's benchmarks: the same seed gives the same vectors on every
//! run and machine, so figures from different runs compare; and the collections benches run on.

// Set-up code of benchmarks: a failure should stop the run loudly.
#![allow(clippy::expect_used)]

pub mod knn;
pub mod memory;

use std::sync::Arc;

use arrow::array::{
    Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, RecordBatchIterator,
};
use arrow::datatypes::{DataType, Field, Schema};
use lance::dataset::{WriteMode, WriteParams};
use lance::Dataset;
use quiver_catalog::location::DataRoot;
use quiver_catalog::Catalog;
use quiver_planner::QuiverSession;
use rand::{Rng, SeedableRng};

/// `n` vectors of `dim` values uniform in [-1, 1), row-major.
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Dimensions of the surface each cluster of [`Clusters`] lies on.
pub const CLUSTER_LATENT_DIMS: usize = 8;

/// Clusters of vectors with the structure of real embeddings, on which an index behaves as on
/// them. Each cluster has a random centre in [-1, 1)^dim and a random linear surface of
/// [`CLUSTER_LATENT_DIMS`] dimensions through it (a spread of about 0.1 per dimension); a point
/// is a random cluster's centre plus a random point of its surface plus a little noise (0.01).
/// (Points scattered in all `dim` dimensions at once would be almost equidistant from each
/// other: no neighbourhood an index could find.) Data and queries are samples of the same
/// clusters.
#[derive(Debug, Clone)]
pub struct Clusters {
    dim: usize,
    centres: Vec<f32>,
    bases: Vec<f32>,
}

impl Clusters {
    /// `count` clusters in `dim` dimensions, from `seed`.
    pub fn new(count: usize, dim: usize, seed: u64) -> Self {
        let count = count.max(1);
        Self {
            dim,
            centres: random_vectors(count, dim, seed ^ 0x9e37_79b9),
            bases: random_vectors(count * CLUSTER_LATENT_DIMS, dim, seed ^ 0x7f4a_7c15)
                .into_iter()
                .map(|b| b * 0.1)
                .collect(),
        }
    }

    /// `n` points of the clusters, row-major, from `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f32> {
        let dim = self.dim;
        let count = self.centres.len() / dim;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * dim);
        let mut latent = [0f32; CLUSTER_LATENT_DIMS];
        for _ in 0..n {
            let c = rng.random_range(0..count);
            for z in &mut latent {
                *z = rng.random_range(-1.0..1.0);
            }
            let basis = &self.bases[c * CLUSTER_LATENT_DIMS * dim..][..CLUSTER_LATENT_DIMS * dim];
            for d in 0..dim {
                let surface: f32 = latent
                    .iter()
                    .enumerate()
                    .map(|(j, z)| z * basis[j * dim + d])
                    .sum();
                out.push(self.centres[c * dim + d] + surface + rng.random_range(-0.01..0.01));
            }
        }
        out
    }
}

/// A `FixedSizeList<Float32, dim>` vector array of row-major `values`.
pub fn vector_array(values: Vec<f32>, dim: usize) -> FixedSizeListArray {
    FixedSizeListArray::new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dim as i32,
        Arc::new(Float32Array::from(values)),
        None,
    )
}

/// A session over a fresh data root holding collection
/// `docs (id BIGINT NOT NULL, embedding VECTOR(dim))` with the row-major vectors `values` (ids
/// from 0), written through Lance in `fragments` fragments. The directory lives as long as the
/// returned guard.
pub async fn collection(
    values: Vec<f32>,
    dim: usize,
    fragments: usize,
) -> (tempfile::TempDir, QuiverSession) {
    let dir = tempfile::tempdir().expect("dir");
    let root = DataRoot::open(&dir.path().to_string_lossy())
        .await
        .expect("root");
    let catalog = Arc::new(Catalog::open(root).await.expect("catalog"));
    let session = QuiverSession::new(catalog.clone());
    session
        .run_script(&format!(
            "CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR({dim}))"
        ))
        .await
        .expect("create");
    let record = catalog.collection("default", "docs").await.expect("record");
    let rows = values.len() / dim;
    let vectors = vector_array(values, dim);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("embedding", vectors.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(vectors),
        ],
    )
    .expect("batch");
    let params = WriteParams {
        max_rows_per_file: rows.div_ceil(fragments),
        max_rows_per_group: rows.div_ceil(fragments).min(1024),
        ..catalog.write_params(WriteMode::Append)
    };
    Dataset::write(
        RecordBatchIterator::new(vec![Ok(batch)], schema),
        catalog.root().uri_of(&record.location).as_str(),
        Some(params),
    )
    .await
    .expect("write");
    (dir, session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic() {
        assert_eq!(random_vectors(3, 4, 7), random_vectors(3, 4, 7));
        assert_ne!(random_vectors(3, 4, 7), random_vectors(3, 4, 8));
        let clusters = Clusters::new(2, 3, 1);
        assert_eq!(clusters.sample(5, 1), clusters.sample(5, 1));
        assert_eq!(clusters.sample(5, 2).len(), 15);
    }
}
