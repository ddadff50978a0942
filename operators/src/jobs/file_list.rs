//! `FileList`: every file stored under the collection and snapshot directories, with whether
//! garbage collection may consider it.
//!
//! A file is a candidate (`collectable`) when it is under a dropped collection's location, or when
//! it is older than the grace period and is a kind of file only a version refers to: a data,
//! deletion, index or transaction file or version manifest of a live collection, any file of a
//! directory no collection or snapshot owns, or a snapshot file of a snapshot the catalog does not
//! know. Tags, version hints and anything under a protected prefix (a running restore's target)
//! are never candidates. Candidates are then matched against the reference set: only
//! unreferenced candidates are deleted.
//!
//! The rules are read from the catalog only once the listing is complete, never before: a
//! restore that starts before the listing ends is then known to the rules (its target is
//! protected), and one that starts later writes no file the listing holds. (A restore's copies
//! may be hard links that keep their source's age, so the grace period alone does not protect
//! them.)

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;
use futures::future::BoxFuture;
use futures::TryStreamExt;
use object_store::ObjectMeta;
use quiver_catalog::location::DataRoot;

use super::{JobProgress, Source};

/// What garbage collection may consider.
#[derive(Debug, Clone, Default)]
pub struct GcRules {
    /// Files modified after this are too young to be orphans (they may belong to a write in
    /// flight).
    pub cutoff: DateTime<Utc>,
    /// Ids of live collections.
    pub live_collections: HashSet<String>,
    /// Root-relative locations of dropped collections (collected regardless of age).
    pub dropped: Vec<String>,
    /// Ids of snapshots the catalog knows (in any state).
    pub known_snapshots: HashSet<String>,
    /// Root-relative prefixes never collected (targets of running restores).
    pub protected: Vec<String>,
    /// Only files of this collection (its directory and its snapshots' manifests), if set.
    pub scope: Option<String>,
}

impl GcRules {
    /// Whether `path` (root-relative) modified at `modified` may be collected if unreferenced.
    pub fn collectable(&self, path: &str, modified: DateTime<Utc>) -> bool {
        if self
            .protected
            .iter()
            .any(|p| path.starts_with(&format!("{p}/")))
        {
            return false;
        }
        if let Some(id) = &self.scope {
            let mine = path.starts_with(&format!("collections/{id}/"))
                || path.starts_with(&format!("snapshots/{id}/"));
            if !mine {
                return false;
            }
        }
        if self
            .dropped
            .iter()
            .any(|d| path.starts_with(&format!("{d}/")))
        {
            return true;
        }
        if modified > self.cutoff {
            return false;
        }
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["collections", id, rest @ ..] if self.live_collections.contains(*id) => match rest {
                ["data" | "_deletions" | "_indices" | "_transactions", ..] => true,
                ["_versions", name] => name.ends_with(".manifest"),
                _ => false,
            },
            ["collections", _, ..] => true,
            ["snapshots", _, snapshot, ..] => !self.known_snapshots.contains(*snapshot),
            _ => false,
        }
    }
}

/// Reads the current [`GcRules`] (from the catalog).
pub type RulesSource = Arc<dyn Fn() -> BoxFuture<'static, Result<GcRules>> + Send + Sync>;

/// Lists the collection and snapshot directories.
pub struct FileList {
    /// The data root.
    root: DataRoot,
    /// The rules deciding `collectable`, read after the listing.
    rules: RulesSource,
}

impl fmt::Debug for FileList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileList").finish_non_exhaustive()
    }
}

impl FileList {
    /// Lists under `root`, then decides with the rules `rules` gives at that point.
    pub fn new(root: DataRoot, rules: RulesSource) -> Self {
        Self { root, rules }
    }
}

impl fmt::Display for FileList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prefixes=[collections, snapshots], rules=after listing")
    }
}

/// Schema of listed files: `path, size_bytes, collectable`.
pub fn listing_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("size_bytes", DataType::UInt64, false),
        Field::new("collectable", DataType::Boolean, false),
    ]))
}

#[async_trait]
impl Source for FileList {
    fn name(&self) -> &'static str {
        "FileListExec"
    }

    fn schema(&self) -> SchemaRef {
        listing_schema()
    }

    async fn run(&self, _progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let mut listed = Vec::new();
        for prefix in ["collections", "snapshots"] {
            let metas: Vec<ObjectMeta> = self
                .root
                .store()
                .list(Some(&self.root.path_of(prefix)))
                .try_collect()
                .await
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            listed.push(metas);
        }
        let rules = (self.rules)().await?;
        let mut out = Vec::new();
        for metas in listed {
            let rows: Vec<(String, u64, bool)> = metas
                .into_iter()
                .filter_map(|m| {
                    let path = self.root.relative_path(&m.location)?;
                    let collectable = rules.collectable(&path, m.last_modified);
                    Some((path, m.size, collectable))
                })
                .collect();
            out.push(RecordBatch::try_new(
                listing_schema(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.0.as_str()),
                    )),
                    Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(BooleanArray::from(
                        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                    )),
                ],
            )?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_version_files_of_live_collections_are_candidates() {
        let old = DateTime::from_timestamp(1_000, 0).unwrap();
        let rules = GcRules {
            cutoff: DateTime::from_timestamp(2_000, 0).unwrap(),
            live_collections: HashSet::from(["live".to_string()]),
            dropped: vec!["collections/gone".to_string()],
            known_snapshots: HashSet::from(["s1".to_string()]),
            protected: vec!["collections/restoring".to_string()],
            scope: None,
        };
        for (path, expected) in [
            ("collections/live/data/a.lance", true),
            (
                "collections/live/_versions/18446744073709551614.manifest",
                true,
            ),
            ("collections/live/_versions/latest_version_hint.json", false),
            ("collections/live/_refs/tags/quiver-snapshot-s1.json", false),
            ("collections/orphan/_refs/tags/x.json", true),
            ("collections/restoring/data/a.lance", false),
            ("snapshots/live/s1/manifest.avro", false),
            ("snapshots/live/s2/manifest.avro", true),
            ("_catalog/log/00000000000000000001.json", false),
        ] {
            assert_eq!(rules.collectable(path, old), expected, "{path}");
        }
        let young = DateTime::from_timestamp(3_000, 0).unwrap();
        assert!(!rules.collectable("collections/live/data/a.lance", young));
        assert!(rules.collectable("collections/gone/data/a.lance", young));
        let scoped = GcRules {
            scope: Some("live".to_string()),
            ..rules
        };
        assert!(scoped.collectable("collections/live/data/a.lance", old));
        assert!(!scoped.collectable("collections/orphan/_refs/tags/x.json", old));
        assert!(!scoped.collectable("collections/gone/data/a.lance", old));
    }
}
