//! What an index search looks for: the query, its metric, `k` and the search settings, and the
//! Lance distance type an index must have to answer it. Shared by [`super::index_knn`] (the
//! operator) and [`super::direct`] (the search of the index alone).

use std::sync::Arc;

use lance_linalg::distance::DistanceType;

use crate::distance::Metric;

/// Index search settings (`SET quiver.nprobes`, `quiver.ef`, `quiver.refine_factor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSearchParams {
    /// IVF partitions probed.
    pub nprobes: usize,
    /// HNSW search breadth.
    pub ef: usize,
    /// Candidates re-ranked with exact distances, as a multiple of k (0: none).
    pub refine_factor: usize,
}

/// The Lance distance type an index must have been built with to answer `metric` ordered
/// `descending`, if any.
pub fn index_distance_type(metric: Metric, descending: bool) -> Option<DistanceType> {
    match (metric, descending) {
        (Metric::L2, false) => Some(DistanceType::L2),
        (Metric::Cosine, false) => Some(DistanceType::Cosine),
        (Metric::NegativeInnerProduct, false) | (Metric::InnerProduct, true) => {
            Some(DistanceType::Dot)
        }
        _ => None,
    }
}

/// What an [`IndexKnnExec`] searches for.
#[derive(Debug, Clone)]
pub struct IndexSearch {
    /// The index used (for display).
    pub index: String,
    /// The vector column.
    pub column: String,
    /// The query vector.
    pub query: Arc<[f32]>,
    /// The metric of the query.
    pub metric: Metric,
    /// Order by the metric descending (inner product similarity).
    pub descending: bool,
    /// Rows wanted.
    pub k: usize,
    /// Settings.
    pub params: IndexSearchParams,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_map_to_the_index_metric_that_serves_them() {
        assert_eq!(
            index_distance_type(Metric::L2, false),
            Some(DistanceType::L2)
        );
        assert_eq!(
            index_distance_type(Metric::Cosine, false),
            Some(DistanceType::Cosine)
        );
        assert_eq!(
            index_distance_type(Metric::InnerProduct, true),
            Some(DistanceType::Dot)
        );
        assert_eq!(
            index_distance_type(Metric::NegativeInnerProduct, false),
            Some(DistanceType::Dot)
        );
        // Farthest-first has no index.
        assert_eq!(index_distance_type(Metric::L2, true), None);
        assert_eq!(index_distance_type(Metric::InnerProduct, false), None);
    }
}
