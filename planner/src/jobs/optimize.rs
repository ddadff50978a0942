//! Collection maintenance: a job that compacts a collection's small fragments and brings its
//! vector indices up to date with its rows (see `CollectionOptimize`), run on demand by
//! `OPTIMIZE` and on its own when the rows outside an index pass the collection's threshold.
//!
//! The threshold is the collection property `optimize_unindexed_rows`: a number of rows, a
//! share of the rows the index covers (`'5%'`), or `'off'`; unset, it is [`DEFAULT_SHARE`] of
//! the indexed rows and at least [`DEFAULT_MIN_ROWS`]. The server checks every collection every
//! `--index-maintenance-interval` and submits a job for one past its threshold, unless one is
//! already pending or running for it (checked in the submitting commit, so of several servers
//! one submits it).
//!
//! Plan:
//! ```text
//! CollectionOptimizeExec: collection=db.docs, retrain=false
//! ```

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::{plan_err, DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlan;
use quiver_catalog::indices::{index_coverage, IndexCoverage};
use quiver_catalog::{Catalog, CollectionRecord, JobKind, JobRecord};
use quiver_operators::jobs::collection_optimize::CollectionOptimize;
use quiver_operators::jobs::{JobProgress, SourceExec};
use serde::{Deserialize, Serialize};

use super::{spawn_every, JobPlan, JobScheduler};
use crate::error::external;

/// The collection property that sets when an index is optimised on its own.
pub const THRESHOLD_PROPERTY: &str = "optimize_unindexed_rows";

/// Unset, an index is optimised once the rows outside it are this share of the rows in it...
pub const DEFAULT_SHARE: f64 = 0.05;

/// ... and at least this many.
pub const DEFAULT_MIN_ROWS: u64 = 1000;

/// An index optimisation's parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OptimizeSpec {
    /// The collection's id.
    pub collection_id: String,
    /// Train the indices again over all rows (not only add the rows outside them).
    #[serde(default)]
    pub retrain: bool,
}

/// When the rows outside an index make it due for optimisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Never on its own.
    Off,
    /// At this many rows.
    Rows(u64),
    /// At this share of the rows in the index, and at least `min` rows.
    Share {
        /// The share, above 0.
        share: f64,
        /// The fewest rows.
        min: u64,
    },
}

impl Threshold {
    /// The threshold written as `value` (`'off'`, a number of rows, or a percentage).
    pub fn parse(value: &str) -> Result<Self> {
        let value = value.trim();
        let bad = || {
            plan_err!(
                "{THRESHOLD_PROPERTY} is a number of rows, a percentage of the indexed rows \
                 ('5%') or 'off', got '{value}'"
            )
        };
        if value.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        if let Some(percent) = value.strip_suffix('%') {
            return match percent.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p.is_finite() => Ok(Self::Share {
                    share: p / 100.0,
                    min: 1,
                }),
                _ => bad(),
            };
        }
        match value.parse::<u64>() {
            Ok(rows) if rows > 0 => Ok(Self::Rows(rows)),
            _ => bad(),
        }
    }

    /// The threshold of `record` (its property, or the default).
    pub fn of(record: &CollectionRecord) -> Result<Self> {
        match record.properties.get(THRESHOLD_PROPERTY) {
            Some(value) => Self::parse(value),
            None => Ok(Self::Share {
                share: DEFAULT_SHARE,
                min: DEFAULT_MIN_ROWS,
            }),
        }
    }

    /// Whether `index` is due.
    pub fn is_due(&self, index: &IndexCoverage) -> bool {
        match *self {
            Self::Off => false,
            Self::Rows(rows) => index.rows_unindexed >= rows,
            Self::Share { share, min } => {
                let rows = ((index.rows_indexed as f64 * share).ceil() as u64).max(min);
                index.rows_unindexed >= rows
            }
        }
    }
}

/// Submits the optimisation `spec` of `record`; `None` where `only_if_idle` and one is already
/// pending or running for it.
pub async fn submit(
    scheduler: &Arc<JobScheduler>,
    record: &CollectionRecord,
    spec: &OptimizeSpec,
    only_if_idle: bool,
) -> Result<Option<JobRecord>> {
    let value = serde_json::to_value(spec).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let target = record.qualified_name();
    if only_if_idle {
        scheduler
            .submit_unless_active(JobKind::Optimize, target, value)
            .await
    } else {
        Ok(Some(
            scheduler.submit(JobKind::Optimize, target, value).await?,
        ))
    }
}

/// The optimisation's plan.
pub async fn build(
    catalog: &Arc<Catalog>,
    spec: &OptimizeSpec,
    progress: Arc<dyn JobProgress>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let state = catalog.state().await.map_err(external)?;
    let name = state
        .collections
        .get(&spec.collection_id)
        .map_or_else(|| spec.collection_id.clone(), |c| c.qualified_name());
    Ok(Arc::new(SourceExec::new(
        CollectionOptimize::new(
            catalog.clone(),
            spec.collection_id.clone(),
            name,
            spec.retrain,
        ),
        progress,
    )))
}

/// The plan of optimisation job `job`.
pub async fn plan(
    catalog: &Arc<Catalog>,
    job: &JobRecord,
    progress: Arc<dyn JobProgress>,
) -> Result<JobPlan> {
    let spec: OptimizeSpec = serde_json::from_value(job.spec.clone())
        .map_err(|e| DataFusionError::Execution(format!("job {}: bad spec: {e}", job.id)))?;
    Ok(JobPlan {
        plan: build(catalog, &spec, progress).await?,
        rollback: None,
    })
}

/// Whether an index of `record`'s newest version is past the collection's threshold.
pub async fn is_due(catalog: &Catalog, record: &CollectionRecord) -> Result<bool> {
    let threshold = Threshold::of(record)?;
    if threshold == Threshold::Off {
        return Ok(false);
    }
    let dataset = catalog.open_dataset(record, None).await.map_err(external)?;
    let coverage = index_coverage(&dataset).await.map_err(external)?;
    Ok(coverage.iter().any(|index| threshold.is_due(index)))
}

/// Submits an optimisation for every collection past its threshold that has none pending or
/// running; returns the jobs submitted.
pub async fn submit_due(scheduler: &Arc<JobScheduler>) -> Result<Vec<JobRecord>> {
    let state = scheduler.catalog().state().await.map_err(external)?;
    let mut submitted = Vec::new();
    for record in state.collections.values() {
        match is_due(scheduler.catalog(), record).await {
            Ok(true) => {
                let spec = OptimizeSpec {
                    collection_id: record.id.clone(),
                    retrain: false,
                };
                submitted.extend(submit(scheduler, record, &spec, true).await?);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "index maintenance: {} could not be checked: {e}",
                record.qualified_name()
            ),
        }
    }
    Ok(submitted)
}

/// Checks every collection every `every` until the process ends (see the module docs).
pub fn start(scheduler: &Arc<JobScheduler>, every: Duration) {
    let scheduler = scheduler.clone();
    spawn_every(every, move || {
        let scheduler = scheduler.clone();
        async move {
            match submit_due(&scheduler).await {
                Ok(jobs) if !jobs.is_empty() => tracing::info!(
                    "index maintenance started for {:?}",
                    jobs.iter().map(|j| j.target.as_str()).collect::<Vec<_>>()
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("index maintenance could not start: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(rows_indexed: u64, rows_unindexed: u64) -> IndexCoverage {
        IndexCoverage {
            name: "v_idx".into(),
            segments: 1,
            rows_indexed,
            rows_unindexed,
        }
    }

    #[test]
    fn thresholds_are_rows_shares_or_off() {
        assert_eq!(Threshold::parse("OFF").unwrap(), Threshold::Off);
        assert_eq!(Threshold::parse(" 500 ").unwrap(), Threshold::Rows(500));
        assert_eq!(
            Threshold::parse("10%").unwrap(),
            Threshold::Share { share: 0.1, min: 1 }
        );
        for bad in ["", "0", "-3", "0%", "ten", "5%%", "NaN%"] {
            let err = Threshold::parse(bad).unwrap_err().to_string();
            assert!(err.contains(THRESHOLD_PROPERTY), "{bad}: {err}");
        }
    }

    #[test]
    fn an_index_is_due_once_the_rows_outside_reach_the_threshold() {
        let default = Threshold::Share {
            share: DEFAULT_SHARE,
            min: DEFAULT_MIN_ROWS,
        };
        assert!(!default.is_due(&coverage(100_000, 4_999)));
        assert!(default.is_due(&coverage(100_000, 5_000)));
        // A small collection waits for the minimum.
        assert!(!default.is_due(&coverage(2_000, 999)));
        assert!(default.is_due(&coverage(2_000, 1_000)));
        assert!(Threshold::Rows(10).is_due(&coverage(1_000_000, 10)));
        assert!(!Threshold::Rows(10).is_due(&coverage(0, 9)));
        assert!(!Threshold::Off.is_due(&coverage(0, u64::MAX)));
    }
}
