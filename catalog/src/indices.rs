//! The indices of a collection's dataset, as Quiver describes them.
//!
//! Lance records each index in the dataset's manifest; this module reads those records into
//! [`VectorIndexInfo`] (the name, column, type and metric a query planner needs to decide whether
//! an index can answer a search, and what `SHOW INDEXES` and snapshot manifests list) and
//! [`ScalarIndexInfo`] (the indices Lance's scanner evaluates filters with), and measures how far
//! each is behind its rows ([`IndexCoverage`]). The primary key's index, which Quiver keeps
//! itself ([`KEY_INDEX`]), and Lance's system indices are not listed.

use std::sync::Arc;

use lance::index::DatasetIndexExt;
use lance::Dataset;
use lance_index::{IndexDescription, IndexType};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::key_index::KEY_INDEX;

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

/// One scalar index: filters on its column are evaluated through it by Lance's scanner.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarIndexInfo {
    /// The index name, unique in its collection.
    pub name: String,
    /// The indexed column.
    pub column: String,
    /// Its type as `CREATE INDEX ... USING` names it: `BTREE`, `BITMAP`, `LABEL_LIST`.
    pub index_type: String,
    /// Rows covered by the index (rows written later are scanned).
    pub rows_indexed: u64,
}

/// Whether a Lance index type is a vector index.
fn is_vector_index(index_type: &str) -> bool {
    index_type.starts_with("IVF") || index_type == "Vector"
}

/// The name `CREATE INDEX ... USING` gives a scalar index of Lance's `index_type`, or `None` for
/// one Quiver does not build (Lance's system indices, vector indices).
fn scalar_type_name(index_type: &str) -> Option<&'static str> {
    match IndexType::try_from(index_type).ok()? {
        IndexType::BTree => Some("BTREE"),
        IndexType::Bitmap => Some("BITMAP"),
        IndexType::LabelList => Some("LABEL_LIST"),
        _ => None,
    }
}

/// The indices of `dataset`'s version a user built (not the primary key's), with the column
/// each is on, by name.
async fn user_indices(dataset: &Dataset) -> Result<Vec<(Arc<dyn IndexDescription>, String)>> {
    let mut out = Vec::new();
    for index in dataset.describe_indices(None).await? {
        if index.name() == KEY_INDEX {
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
        out.push((index, column));
    }
    out.sort_by(|a, b| a.0.name().cmp(b.0.name()));
    Ok(out)
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
    for (index, column) in user_indices(dataset).await? {
        if !is_vector_index(index.index_type()) {
            continue;
        }
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
    Ok(out)
}

/// The scalar indices of `dataset`'s version (those `CREATE INDEX` builds), by name.
pub async fn scalar_indices(dataset: &Dataset) -> Result<Vec<ScalarIndexInfo>> {
    let mut out = Vec::new();
    for (index, column) in user_indices(dataset).await? {
        let Some(index_type) = scalar_type_name(index.index_type()) else {
            continue;
        };
        out.push(ScalarIndexInfo {
            name: index.name().to_string(),
            column,
            index_type: index_type.to_string(),
            rows_indexed: index.rows_indexed(),
        });
    }
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

/// The coverage of each vector and scalar index of `dataset`'s version (those
/// [`vector_indices`] and [`scalar_indices`] list), by name.
pub async fn index_coverage(dataset: &Dataset) -> Result<Vec<IndexCoverage>> {
    let mut out = Vec::new();
    for (index, _) in user_indices(dataset).await? {
        let index_type = index.index_type();
        if !is_vector_index(index_type) && scalar_type_name(index_type).is_none() {
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
        assert_eq!(scalar_type_name("BTree"), Some("BTREE"));
        assert_eq!(scalar_type_name("LabelList"), Some("LABEL_LIST"));
        assert_eq!(scalar_type_name("IVF_PQ"), None);
        assert_eq!(scalar_type_name("FragmentReuse"), None);
    }
}
