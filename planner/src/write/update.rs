//! `UPDATE` of a collection.
//!
//! With a primary key, the rows to change are read, given their new values and written back
//! through [`CollectionSink`] as one upsert by key — one new Lance version, with the same
//! validation as an `INSERT` (NULL in a NOT NULL column, a vector of the wrong dimension, NaN, a
//! NULL element), so a bad new value leaves the collection as it was. The key itself cannot be
//! assigned: an upsert by key would add a row under the new key and keep the old one.
//!
//! Without a key, the rows are rewritten by address (see [`crate::write::rewrite_rows`]), with the same
//! validation.
//!
//! New vector values arrive as `to_vector(value, dim, column)` (see [`crate::write::vector_cast`]), so
//! a wrong dimension names the column.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::split_conjunction_owned;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use quiver_catalog::{Catalog, CollectionRecord};

use crate::error::PlannerError;
use crate::write::dml::{unqualified, DmlExec};
use crate::write::rewrite_rows::RewriteRows;
use crate::write::sink::CollectionSink;
use quiver_operators::functions::calls_vector_function;

/// Refuses an assignment to a primary key column.
pub fn check_key_unchanged(
    record: &CollectionRecord,
    assignments: &[(String, Expr)],
) -> Result<()> {
    match assignments
        .iter()
        .find(|(column, _)| record.primary_key.contains(column))
    {
        Some((column, _)) => Err(PlannerError::Unsupported(format!(
            "UPDATE cannot change the primary key column '{column}' of '{}'; DELETE the row and \
             INSERT it again",
            record.qualified_name()
        ))
        .into()),
        None => Ok(()),
    }
}

/// The new value of every column of `schema`: its assigned expression, or the column itself.
fn new_values(
    state: &dyn Session,
    schema: &SchemaRef,
    df_schema: &DFSchema,
    assignments: &[(String, Expr)],
) -> Result<Vec<(Arc<dyn PhysicalExpr>, String)>> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let expr: Arc<dyn PhysicalExpr> =
                match assignments.iter().find(|(c, _)| c == field.name()) {
                    Some((_, value)) => {
                        state.create_physical_expr(unqualified(value.clone())?, df_schema)?
                    }
                    None => Arc::new(Column::new(field.name(), i)),
                };
            Ok((expr, field.name().clone()))
        })
        .collect()
}

/// The plan of `UPDATE record SET assignments WHERE filters` for a collection with a primary
/// key: `scan` (the collection's rows) filtered, projected to the new values, upserted.
pub fn keyed_update(
    state: &dyn Session,
    catalog: Arc<Catalog>,
    record: CollectionRecord,
    schema: SchemaRef,
    scan: Arc<dyn ExecutionPlan>,
    assignments: Vec<(String, Expr)>,
    filters: Vec<Expr>,
) -> Result<Arc<dyn ExecutionPlan>> {
    check_key_unchanged(&record, &assignments)?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let rows: Arc<dyn ExecutionPlan> = match filters.into_iter().reduce(Expr::and) {
        Some(filter) => Arc::new(FilterExec::try_new(
            state.create_physical_expr(unqualified(filter)?, &df_schema)?,
            scan,
        )?),
        None => scan,
    };
    let exprs = new_values(state, &schema, &df_schema, &assignments)?;
    let changed = Arc::new(ProjectionExec::try_new(exprs, rows)?);
    let sink = CollectionSink::new(catalog, record, schema, InsertOp::Replace)?;
    Ok(Arc::new(DataSinkExec::new(changed, Arc::new(sink), None)))
}

/// The plan of `UPDATE record SET assignments WHERE filters` for a collection without a primary
/// key: the rows are rewritten by address. Conjuncts of the filter that
/// call none of Quiver's vector functions go to Lance's scan; the others are evaluated over the
/// scanned rows.
pub fn keyless_update(
    state: &dyn Session,
    catalog: Arc<Catalog>,
    record: CollectionRecord,
    schema: SchemaRef,
    assignments: Vec<(String, Expr)>,
    filters: Vec<Expr>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let filter = filters.iter().cloned().reduce(Expr::and);
    let (vector, plain): (Vec<Expr>, Vec<Expr>) = filters
        .into_iter()
        .flat_map(split_conjunction_owned)
        .partition(calls_vector_function);
    let pushed_filter = plain
        .into_iter()
        .map(unqualified)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .reduce(Expr::and);
    let residual_filter = match vector.into_iter().reduce(Expr::and) {
        Some(f) => Some(state.create_physical_expr(unqualified(f)?, &df_schema)?),
        None => None,
    };
    let values = new_values(state, &schema, &df_schema, &assignments)?
        .into_iter()
        .map(|(expr, _)| expr)
        .collect();
    Ok(Arc::new(DmlExec::new(Arc::new(RewriteRows {
        catalog,
        record,
        schema,
        pushed_filter,
        residual_filter,
        values,
        assignments,
        filter,
    }))))
}
