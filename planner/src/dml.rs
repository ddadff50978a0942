//! `DELETE` and `UPDATE` on a collection, run by Lance as one new version each.
//!
//! The operator is a leaf that does its work when executed and returns one row, `count`, the
//! number of rows deleted or updated — the shape DataFusion's DML statements return.

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
use datafusion::sql::unparser::expr_to_sql;
use lance::dataset::{DeleteBuilder, UpdateBuilder};
use quiver_catalog::{Catalog, CollectionRecord};

use crate::catalog_provider::external;

/// What a [`DmlExec`] does.
#[derive(Debug, Clone)]
pub enum DmlOp {
    /// Delete the rows matching `filter` (all rows if `None`).
    Delete {
        /// Which rows.
        filter: Option<Expr>,
    },
    /// Set columns of the rows matching `filter` (all rows if `None`).
    Update {
        /// Column and new value expression.
        assignments: Vec<(String, Expr)>,
        /// Which rows.
        filter: Option<Expr>,
    },
}

/// Runs a [`DmlOp`] against the latest version of a collection.
#[derive(Debug)]
pub struct DmlExec {
    catalog: Arc<Catalog>,
    record: CollectionRecord,
    op: DmlOp,
    properties: Arc<PlanProperties>,
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
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

impl DmlExec {
    /// An operator that runs `op` on `record`'s collection.
    pub fn new(catalog: Arc<Catalog>, record: CollectionRecord, op: DmlOp) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            catalog,
            record,
            op,
            properties: Arc::new(properties),
        }
    }

    async fn run(catalog: Arc<Catalog>, record: CollectionRecord, op: DmlOp) -> Result<u64> {
        let dataset = Arc::new(
            catalog
                .open_dataset(&record, None)
                .await
                .map_err(external)?,
        );
        match op {
            DmlOp::Delete { filter } => {
                let filter = match filter {
                    Some(f) => unqualified(f)?,
                    None => datafusion::prelude::lit(true),
                };
                let result = DeleteBuilder::from_expr(dataset, filter).execute().await?;
                Ok(result.num_deleted_rows)
            }
            DmlOp::Update {
                assignments,
                filter,
            } => {
                let mut builder = UpdateBuilder::new(dataset);
                if let Some(filter) = filter {
                    builder = builder.update_where_expr(unqualified(filter)?)?;
                }
                for (column, value) in assignments {
                    let sql = expr_to_sql(&unqualified(value)?)?.to_string();
                    builder = builder.set(&column, &sql)?;
                }
                let result = builder.build()?.execute().await?;
                Ok(result.rows_updated)
            }
        }
    }
}

impl DisplayAs for DmlExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            DmlOp::Delete { filter } => write!(
                f,
                "DeleteExec: table={}, filter={}",
                self.record.qualified_name(),
                filter
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or("true".into())
            ),
            DmlOp::Update {
                assignments,
                filter,
            } => write!(
                f,
                "UpdateExec: table={}, set=[{}], filter={}",
                self.record.qualified_name(),
                assignments
                    .iter()
                    .map(|(c, e)| format!("{c} = {e}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                filter
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or("true".into())
            ),
        }
    }
}

impl ExecutionPlan for DmlExec {
    fn name(&self) -> &str {
        "DmlExec"
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
            internal_err!("DmlExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("DmlExec has one partition, got {partition}");
        }
        let (catalog, record, op) = (self.catalog.clone(), self.record.clone(), self.op.clone());
        let schema = count_schema();
        let out_schema = schema.clone();
        let fut = async move {
            let n = Self::run(catalog, record, op).await?;
            Ok(RecordBatch::try_new(
                out_schema,
                vec![Arc::new(UInt64Array::from(vec![n]))],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(fut),
        )))
    }
}
