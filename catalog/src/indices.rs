//! The vector indices of a collection's dataset, as Quiver describes them.
//!
//! Lance records each index in the dataset's manifest; this module reads those records into
//! [`VectorIndexInfo`] (the name, column, type and metric a query planner needs to decide whether
//! an index can answer a search, and what `SHOW INDEXES` and snapshot manifests list).

use lance::index::DatasetIndexExt;
use lance::Dataset;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One vector index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorIndexInfo {
    /// The index name, unique in its collection.
    pub name: String,
    /// The indexed vector column.
    pub column: String,
    /// Lance's index type (`IVF_PQ`, `IVF_HNSW_SQ`, ...).
    pub index_type: String,
    /// The metric it was built for: `l2`, `cosine` or `dot`.
    pub metric: String,
    /// Rows covered by the index (rows written later are searched exactly).
    pub rows_indexed: u64,
    /// Lance's description of its parameters, as JSON.
    pub details: String,
}

/// Whether a Lance index type is a vector index.
fn is_vector_index(index_type: &str) -> bool {
    index_type.starts_with("IVF") || index_type == "Vector"
}

/// The metric recorded in Lance's index details (`{"metric_type": "L2", ...}`), lower-cased.
fn metric_of(details: &str) -> String {
    serde_json::from_str::<serde_json::Value>(details)
        .ok()
        .and_then(|v| {
            v.get("metric_type")
                .and_then(|m| m.as_str())
                .map(str::to_lowercase)
        })
        .unwrap_or_else(|| "l2".to_string())
}

/// The vector indices of `dataset`'s version.
pub async fn vector_indices(dataset: &Dataset) -> Result<Vec<VectorIndexInfo>> {
    let mut out = Vec::new();
    for index in dataset.describe_indices(None).await? {
        if !is_vector_index(index.index_type()) {
            continue;
        }
        let Some(column) = index
            .field_ids()
            .first()
            .and_then(|id| dataset.schema().field_by_id(*id as i32))
            .map(|f| f.name.clone())
        else {
            continue;
        };
        let details = index.details().unwrap_or_default();
        out.push(VectorIndexInfo {
            name: index.name().to_string(),
            column,
            index_type: index.index_type().to_string(),
            metric: metric_of(&details),
            rows_indexed: index.rows_indexed(),
            details,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// How far one index of a dataset version is behind its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCoverage {
    /// The index name.
    pub name: String,
    /// Its segments: one after a build, one more for each delta Lance adds beside it.
    pub segments: usize,
    /// Live rows of the version in fragments a segment covers.
    pub rows_indexed: u64,
    /// Live rows of the version in fragments no segment covers: written after the index,
    /// searched exactly beside it.
    pub rows_unindexed: u64,
}

/// The coverage of each vector index of `dataset`'s version, by name.
pub async fn vector_index_coverage(dataset: &Dataset) -> Result<Vec<IndexCoverage>> {
    let mut out = Vec::new();
    for index in dataset.describe_indices(None).await? {
        if !is_vector_index(index.index_type()) {
            continue;
        }
        let covered = |id: u64| {
            index.segments().iter().any(|s| {
                s.fragment_bitmap
                    .as_ref()
                    .is_some_and(|b| u32::try_from(id).is_ok_and(|id| b.contains(id)))
            })
        };
        let (mut rows_indexed, mut rows_unindexed) = (0, 0);
        for fragment in dataset.fragments().iter() {
            let rows = fragment.num_rows().unwrap_or(0) as u64;
            if covered(fragment.id) {
                rows_indexed += rows;
            } else {
                rows_unindexed += rows;
            }
        }
        out.push(IndexCoverage {
            name: index.name().to_string(),
            segments: index.segments().len(),
            rows_indexed,
            rows_unindexed,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_comes_from_the_details() {
        assert_eq!(metric_of(r#"{"metric_type":"COSINE","hnsw":{}}"#), "cosine");
        assert_eq!(metric_of(r#"{"metric_type":"Dot"}"#), "dot");
        assert!(is_vector_index("IVF_HNSW_SQ"));
        assert!(!is_vector_index("BTree"));
    }
}
