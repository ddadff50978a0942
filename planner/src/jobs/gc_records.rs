//! The passes of garbage collection over catalog records: snapshot records left by interrupted
//! creates and drops (`StaleSnapshotsExec`), and records of jobs that finished longer ago than the
//! job retention (`ExpiredJobsExec`). Each reports one row per record in the shape of
//! [`report_schema`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use quiver_catalog::Catalog;
use quiver_operators::jobs::file_delete::report_schema;
use quiver_operators::jobs::{JobProgress, Source};

use crate::error::external;

/// One report row per item of `category` (one record each, no bytes).
fn report(category: &str, items: &[String]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        report_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                items.iter().map(|_| category),
            )),
            Arc::new(StringArray::from_iter_values(items.iter())),
            Arc::new(UInt64Array::from_iter_values(items.iter().map(|_| 1))),
            Arc::new(UInt64Array::from_iter_values(items.iter().map(|_| 0))),
        ],
    )?)
}

/// `StaleSnapshotsExec`: clears PENDING and DELETING snapshot records left by interrupted
/// creates and drops (older than the grace period), with their files and tags.
#[derive(Debug)]
pub(super) struct StaleSnapshots {
    pub(super) catalog: Arc<Catalog>,
    pub(super) grace: Duration,
    pub(super) dry_run: bool,
    pub(super) collection_id: Option<String>,
}

impl fmt::Display for StaleSnapshots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "grace={}s, dry_run={}",
            self.grace.num_seconds(),
            self.dry_run
        )
    }
}

#[async_trait]
impl Source for StaleSnapshots {
    fn name(&self) -> &'static str {
        "StaleSnapshotsExec"
    }

    fn schema(&self) -> SchemaRef {
        report_schema()
    }

    async fn run(&self, _progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let stale = self
            .catalog
            .stale_snapshots(self.grace)
            .await
            .map_err(external)?;
        let mut items = Vec::new();
        for snapshot in stale {
            if self
                .collection_id
                .as_ref()
                .is_some_and(|id| id != &snapshot.collection_id)
            {
                continue;
            }
            if !self.dry_run {
                self.catalog
                    .clear_stale_snapshot(&snapshot)
                    .await
                    .map_err(external)?;
            }
            items.push(format!(
                "{}.{}@{} ({})",
                snapshot.database,
                snapshot.collection,
                snapshot.name,
                snapshot.state.as_str()
            ));
        }
        Ok(vec![report("stale snapshots", &items)?])
    }
}

/// `ExpiredJobsExec`: removes the records of jobs that finished longer than `retention` ago
/// (jobs still PENDING or RUNNING are never removed).
#[derive(Debug)]
pub(super) struct ExpiredJobs {
    pub(super) catalog: Arc<Catalog>,
    pub(super) retention: Duration,
    pub(super) dry_run: bool,
}

impl fmt::Display for ExpiredJobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retention={}s, dry_run={}",
            self.retention.num_seconds(),
            self.dry_run
        )
    }
}

#[async_trait]
impl Source for ExpiredJobs {
    fn name(&self) -> &'static str {
        "ExpiredJobsExec"
    }

    fn schema(&self) -> SchemaRef {
        report_schema()
    }

    async fn run(&self, _progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let expired = self
            .catalog
            .expire_jobs(Utc::now() - self.retention, self.dry_run)
            .await
            .map_err(external)?;
        let items: Vec<String> = expired
            .iter()
            .map(|job| {
                format!(
                    "job {} {} {} ({})",
                    job.id,
                    job.kind.as_str(),
                    job.target,
                    job.state.as_str()
                )
            })
            .collect();
        Ok(vec![report("expired jobs", &items)?])
    }
}
