//! [`CollectionScanExec`]: a collection scan, as the optimizer sees it.
//!
//! Wraps the plan Lance builds for a scan (which does the work) and keeps what Lance's plan does
//! not expose: the dataset version, the pushed-down filters, the projected columns and the
//! collection's vector indices. The k-NN rule reads these to replace an exact search by an index
//! search over the same rows.
//!
//! The operator is a leaf to DataFusion: the optimizer cannot rewrite Lance's plan underneath it,
//! so what it records always describes what it produces. `EXPLAIN` shows Lance's plan in its line.

use std::fmt;
use std::sync::Arc;

use datafusion::common::{internal_err, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
};
use futures::TryStreamExt;
use lance::Dataset;
use quiver_catalog::indices::VectorIndexInfo;

use crate::error::{filter_failure, root_relative};

/// A collection scan: Lance's scan plan plus what it reads.
#[derive(Debug)]
pub struct CollectionScanExec {
    /// `database.collection`.
    table: String,
    /// The dataset version scanned.
    dataset: Arc<Dataset>,
    /// Vector indices of that version.
    indices: Arc<Vec<VectorIndexInfo>>,
    /// Dataset columns produced, in order.
    columns: Vec<String>,
    /// Filters pushed into the scan (all exact).
    filters: Vec<Expr>,
    /// Lance's scan plan.
    inner: Arc<dyn ExecutionPlan>,
}

impl CollectionScanExec {
    /// Wraps Lance's scan plan `inner`.
    pub fn new(
        table: String,
        dataset: Arc<Dataset>,
        indices: Arc<Vec<VectorIndexInfo>>,
        filters: Vec<Expr>,
        inner: Arc<dyn ExecutionPlan>,
    ) -> Self {
        let columns = inner
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Self {
            table,
            dataset,
            indices,
            columns,
            filters,
            inner,
        }
    }

    /// The dataset version scanned.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// Vector indices of the scanned version.
    pub fn indices(&self) -> &[VectorIndexInfo] {
        &self.indices
    }

    /// Dataset columns produced, in output order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Filters applied by the scan.
    pub fn filters(&self) -> &[Expr] {
        &self.filters
    }
}

impl DisplayAs for CollectionScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "CollectionScanExec: table={}, version={}, scan={}",
                self.table,
                self.dataset.version_id(),
                root_relative(&displayable(self.inner.as_ref()).indent(false).to_string())
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" <- ")
            ),
            DisplayFormatType::TreeRender => write!(f, "table={}", self.table),
        }
    }
}

impl ExecutionPlan for CollectionScanExec {
    fn name(&self) -> &str {
        "CollectionScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("CollectionScanExec is a leaf")
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.inner.execute(partition, context)?;
        let schema = stream.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map_err(filter_failure),
        )))
    }
}
