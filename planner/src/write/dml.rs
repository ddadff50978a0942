//! The operator of Quiver's `DELETE` and keyless `UPDATE`, and `DELETE` itself, run by Lance as
//! one new version.
//!
//! [`DmlExec`] is a leaf that runs a [`DmlAction`] when executed and returns one row, `count`,
//! the number of rows deleted or updated — the shape DataFusion's DML statements return.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{internal_err, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::future::BoxFuture;
use lance::dataset::DeleteBuilder;
use quiver_catalog::{Catalog, CollectionRecord};

use crate::error::{external, filter_failure};

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// A DML statement's filter as `EXPLAIN` shows it (`true` without one).
pub(crate) fn filter_text(filter: Option<&Expr>) -> String {
    filter.map_or_else(|| "true".to_string(), |e| e.to_string())
}

/// Drops table qualifiers from column references: Lance resolves names against the dataset.
pub(crate) fn unqualified(expr: Expr) -> Result<Expr> {
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => Transformed::yes(Expr::Column(
                datafusion::common::Column::new_unqualified(c.name),
            )),
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
}

/// A write that a [`DmlExec`] runs: it does its work when executed and counts the rows it
/// changed.
pub trait DmlAction: fmt::Debug + Send + Sync {
    /// The operator's name in plans: the action's type name followed by `Exec` (`Delete` shows
    /// as `DeleteExec`).
    fn name(&self) -> &'static str;

    /// What the write does, for `EXPLAIN` (after the name).
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;

    /// Runs the write on the collection's latest version; returns the number of rows changed.
    fn run(&self) -> BoxFuture<'static, Result<u64>>;
}

/// A leaf operator that runs a [`DmlAction`] and returns one row, `count`.
#[derive(Debug)]
pub struct DmlExec {
    action: Arc<dyn DmlAction>,
    properties: Arc<PlanProperties>,
}

impl DmlExec {
    /// An operator that runs `action`.
    pub fn new(action: Arc<dyn DmlAction>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            action,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for DmlExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.action.name())?;
        self.action.describe(f)
    }
}

impl ExecutionPlan for DmlExec {
    fn name(&self) -> &str {
        self.action.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
            internal_err!("{} has no children", self.action.name())
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("{} has one partition, got {partition}", self.action.name());
        }
        let schema = count_schema();
        let out_schema = schema.clone();
        let work = self.action.run();
        let batch = async move {
            let n = work.await?;
            Ok(RecordBatch::try_new(
                out_schema,
                vec![Arc::new(UInt64Array::from(vec![n]))],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(batch),
        )))
    }
}

/// `DELETE`: deletes the rows of a collection that match a filter (all rows without one) with
/// Lance's delete builder.
#[derive(Debug)]
pub struct Delete {
    catalog: Arc<Catalog>,
    record: CollectionRecord,
    filter: Option<Expr>,
}

impl Delete {
    /// A delete of the rows of `record`'s collection matching `filter`.
    pub fn new(catalog: Arc<Catalog>, record: CollectionRecord, filter: Option<Expr>) -> Self {
        Self {
            catalog,
            record,
            filter,
        }
    }
}

impl DmlAction for Delete {
    fn name(&self) -> &'static str {
        "DeleteExec"
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table={}, filter={}",
            self.record.qualified_name(),
            filter_text(self.filter.as_ref())
        )
    }

    fn run(&self) -> BoxFuture<'static, Result<u64>> {
        let (catalog, record) = (self.catalog.clone(), self.record.clone());
        let filter = self.filter.clone();
        Box::pin(async move {
            let filter = match filter {
                Some(f) => unqualified(f)?,
                None => datafusion::prelude::lit(true),
            };
            let dataset = Arc::new(
                catalog
                    .open_dataset(&record, None)
                    .await
                    .map_err(external)?,
            );
            let result = DeleteBuilder::from_expr(dataset, filter)
                .execute()
                .await
                .map_err(|e| filter_failure(e.into()))?;
            Ok(result.num_deleted_rows)
        })
    }
}
