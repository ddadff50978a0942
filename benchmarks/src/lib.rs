//! Deterministic data for Quiver's benchmarks: the same seed gives the same vectors on every
//! run and machine, so figures from different runs compare; and the collections benches run on.

// Set-up code of benchmarks: a failure should stop the run loudly.
#![allow(clippy::expect_used)]

pub mod knn;

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
    let root = DataRoot::open(&dir.path().to_string_lossy()).expect("root");
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
        assert_eq!(clustered_vectors(5, 3, 2, 1).len(), 15);
    }
}
