//! The `quiver` system schema: the catalog's records as read-only tables
//! (`quiver.databases`, `quiver.collections`, `quiver.snapshots`, `quiver.jobs`).
//!
//! Each table is built from the latest committed catalog when a statement names it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::error::Result;
use quiver_catalog::{Catalog, CatalogState, JobRecord, SnapshotRecord, SnapshotState};

use crate::error::external;

/// A system table: its name and how to build it from the catalog.
struct SystemTable {
    name: &'static str,
    build: fn(&CatalogState) -> Result<RecordBatch>,
}

const TABLES: &[SystemTable] = &[
    SystemTable {
        name: "jobs",
        build: all_jobs,
    },
    SystemTable {
        name: "snapshots",
        build: committed_snapshots,
    },
    SystemTable {
        name: "databases",
        build: databases,
    },
    SystemTable {
        name: "collections",
        build: collections,
    },
];

/// The `quiver` schema.
#[derive(Debug)]
pub struct SystemSchema {
    catalog: Arc<Catalog>,
}

impl SystemSchema {
    /// The system schema of `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

/// A non-null UTC timestamp column type.
pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Microsecond timestamps (UTC) for a timestamp column.
pub(crate) fn timestamps(
    values: impl IntoIterator<Item = Option<chrono::DateTime<chrono::Utc>>>,
) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(
            values
                .into_iter()
                .map(|t| t.map(|t| t.timestamp_micros()))
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    )
}

/// Snapshots as rows: id, database, collection, name, comment, state, created_at, version, rows,
/// files, bytes.
pub fn snapshots_batch(snapshots: &[SnapshotRecord]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("database", DataType::Utf8, false),
        Field::new("collection", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("comment", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, false),
        Field::new("created_at", timestamp_type(), false),
        Field::new("version", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]));
    let strings = |f: fn(&SnapshotRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(snapshots.iter().map(f)))
    };
    let numbers = |f: fn(&SnapshotRecord) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(snapshots.iter().map(f)))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            strings(|s| &s.id),
            strings(|s| &s.database),
            strings(|s| &s.collection),
            strings(|s| &s.name),
            Arc::new(StringArray::from(
                snapshots
                    .iter()
                    .map(|s| s.comment.clone())
                    .collect::<Vec<_>>(),
            )),
            strings(|s| s.state.as_str()),
            timestamps(snapshots.iter().map(|s| Some(s.created_at))),
            numbers(|s| s.version),
            numbers(|s| s.rows),
            numbers(|s| s.files),
            numbers(|s| s.bytes),
        ],
    )?)
}

/// Jobs as rows: id, kind, target, state, progress, files/bytes/rows done and total, error,
/// created/started/finished times.
pub fn jobs_batch(jobs: &[JobRecord]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("progress", DataType::UInt64, false),
        Field::new("files_done", DataType::UInt64, false),
        Field::new("files_total", DataType::UInt64, false),
        Field::new("bytes_done", DataType::UInt64, false),
        Field::new("bytes_total", DataType::UInt64, false),
        Field::new("rows_done", DataType::UInt64, false),
        Field::new("rows_total", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("created_at", timestamp_type(), false),
        Field::new("started_at", timestamp_type(), true),
        Field::new("finished_at", timestamp_type(), true),
    ]));
    let numbers = |f: fn(&JobRecord) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(jobs.iter().map(f)))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            numbers(|j| j.id),
            Arc::new(StringArray::from_iter_values(
                jobs.iter().map(|j| j.kind.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                jobs.iter().map(|j| j.target.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                jobs.iter().map(|j| j.state.as_str()),
            )),
            numbers(|j| u64::from(j.progress)),
            numbers(|j| j.files_done),
            numbers(|j| j.files_total),
            numbers(|j| j.bytes_done),
            numbers(|j| j.bytes_total),
            numbers(|j| j.rows_done),
            numbers(|j| j.rows_total),
            Arc::new(StringArray::from(
                jobs.iter().map(|j| j.error.clone()).collect::<Vec<_>>(),
            )),
            timestamps(jobs.iter().map(|j| Some(j.created_at))),
            timestamps(jobs.iter().map(|j| j.started_at)),
            timestamps(jobs.iter().map(|j| j.finished_at)),
        ],
    )?)
}

fn all_jobs(state: &CatalogState) -> Result<RecordBatch> {
    let mut jobs: Vec<JobRecord> = state.jobs.values().cloned().collect();
    jobs.sort_by_key(|j| j.id);
    jobs_batch(&jobs)
}

fn committed_snapshots(state: &CatalogState) -> Result<RecordBatch> {
    let mut snapshots: Vec<SnapshotRecord> = state
        .snapshots
        .values()
        .filter(|s| s.state == SnapshotState::Committed)
        .cloned()
        .collect();
    snapshots.sort_by(|a, b| {
        (&a.database, &a.collection, a.created_at).cmp(&(&b.database, &b.collection, b.created_at))
    });
    snapshots_batch(&snapshots)
}

fn databases(state: &CatalogState) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("collections", DataType::UInt64, false),
        Field::new("created_at", timestamp_type(), false),
    ]));
    let dbs: Vec<_> = state.databases.values().collect();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                dbs.iter().map(|d| d.name.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                dbs.iter()
                    .map(|d| state.collections_in(&d.name).len() as u64),
            )),
            timestamps(dbs.iter().map(|d| Some(d.created_at))),
        ],
    )?)
}

fn collections(state: &CatalogState) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("database", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("primary_key", DataType::Utf8, true),
        Field::new("location", DataType::Utf8, false),
        Field::new("created_at", timestamp_type(), false),
        Field::new("properties", DataType::Utf8, false),
    ]));
    let mut rows: Vec<_> = state.collections.values().collect();
    rows.sort_by(|a, b| (&a.database, &a.name).cmp(&(&b.database, &b.name)));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|c| c.database.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|c| c.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|c| c.id.as_str()),
            )),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|c| (!c.primary_key.is_empty()).then(|| c.primary_key.join(", ")))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|c| c.location.as_str()),
            )),
            timestamps(rows.iter().map(|c| Some(c.created_at))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|c| {
                c.properties
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }))),
        ],
    )?)
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = TABLES.iter().find(|t| t.name == name) else {
            return Ok(None);
        };
        let state = self.catalog.state().await.map_err(external)?;
        let batch = (table.build)(&state)?;
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(mem)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.iter().any(|t| t.name == name)
    }
}
