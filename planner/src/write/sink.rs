//! Writing rows into a collection: `INSERT`, `REPLACE INTO` (upsert), `COPY ... FROM`.
//!
//! The rows stream into one Lance transaction; nothing becomes visible unless every batch passed
//! validation and the commit succeeded, so a bad row anywhere leaves the collection exactly as it
//! was. Validation names the column and row: NULL in a NOT NULL column, non-finite values in a
//! vector. With a primary key, inserts go through Lance's merge-insert, which fails on a key that
//! exists already or repeats within the input; the key is declared to Lance
//! ([`quiver_catalog::primary_key`]), so of concurrent writers of one key, in any process, exactly
//! one inserts it.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Float16Type, Float32Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use lance::dataset::{InsertBuilder, MergeInsertBuilder, WhenMatched, WhenNotMatched, WriteMode};
use quiver_catalog::{Catalog, CollectionRecord};
use quiver_operators::vector::first_null_element;
use quiver_operators::OperatorError;

use crate::error::{external, PlannerError};

/// Writes a stream of rows into a collection as one new version.
#[derive(Debug)]
pub struct CollectionSink {
    catalog: Arc<Catalog>,
    record: CollectionRecord,
    /// The collection's schema (what is written).
    table_schema: SchemaRef,
    /// The schema DataFusion checks input against: the table's, all nullable, so that NULL
    /// checks happen here, with the column's name in the error.
    input_schema: SchemaRef,
    op: InsertOp,
}

impl CollectionSink {
    /// A sink into `record` with `op` (append, overwrite or upsert).
    pub fn new(
        catalog: Arc<Catalog>,
        record: CollectionRecord,
        table_schema: SchemaRef,
        op: InsertOp,
    ) -> Result<Self> {
        if op == InsertOp::Replace && record.primary_key.is_empty() {
            return Err(PlannerError::UpsertWithoutKey {
                table: record.qualified_name(),
            }
            .into());
        }
        let input_schema = Arc::new(Schema::new(
            table_schema
                .fields()
                .iter()
                .map(|f| Field::clone(f).with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            catalog,
            record,
            table_schema,
            input_schema,
            op,
        })
    }
}

impl DisplayAs for CollectionSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            InsertOp::Append => "append",
            InsertOp::Overwrite => "overwrite",
            InsertOp::Replace => "upsert",
        };
        write!(
            f,
            "CollectionSink: table={}, op={op}",
            self.record.qualified_name()
        )
    }
}

/// Checks one input batch and gives it the collection's schema.
pub(crate) struct Validator {
    table: String,
    schema: SchemaRef,
    rows_seen: AtomicUsize,
    rows_written: Arc<AtomicU64>,
    /// Primary key column indices, and the keys this insert has already seen.
    key: Option<(Vec<usize>, RowConverter, HashSet<OwnedRow>)>,
}

impl Validator {
    /// A validator of rows for the collection `table` with `schema`; counts the rows it passes
    /// in `rows_written`.
    pub(crate) fn new(
        table: String,
        schema: SchemaRef,
        primary_key: &[String],
        rows_written: Arc<AtomicU64>,
    ) -> Result<Self> {
        let key = if primary_key.is_empty() {
            None
        } else {
            let indices = primary_key
                .iter()
                .map(|k| schema.index_of(k))
                .collect::<Result<Vec<_>, _>>()?;
            let fields = indices
                .iter()
                .map(|i| SortField::new(schema.field(*i).data_type().clone()))
                .collect();
            Some((indices, RowConverter::new(fields)?, HashSet::new()))
        };
        Ok(Self {
            table,
            schema,
            rows_seen: AtomicUsize::new(0),
            rows_written,
            key,
        })
    }

    /// Gives each column its collection type: vectors through `to_vector`'s conversion (so a
    /// wrong length names the column), other types by a cast.
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if batch.num_columns() != self.schema.fields().len() {
            return Err(PlannerError::Invalid(format!(
                "'{}' has {} columns, the input {}",
                self.table,
                self.schema.fields().len(),
                batch.num_columns()
            ))
            .into());
        }
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            if column.data_type() == field.data_type() {
                columns.push(column.clone());
            } else if let DataType::FixedSizeList(_, dim) = field.data_type() {
                let converted = quiver_operators::functions::to_vector::convert(
                    column,
                    *dim as usize,
                    &format!("column '{}'", field.name()),
                )?;
                columns.push(datafusion::arrow::compute::cast(
                    &converted,
                    field.data_type(),
                )?);
            } else {
                columns.push(datafusion::arrow::compute::cast(column, field.data_type())?);
            }
        }
        let nullable = Schema::new(
            self.schema
                .fields()
                .iter()
                .map(|f| Field::clone(f).with_nullable(true))
                .collect::<Vec<_>>(),
        );
        Ok(RecordBatch::try_new(Arc::new(nullable), columns)?)
    }

    /// Fails if a key of `batch` repeats a key seen earlier in this insert.
    fn check_unique_keys(&mut self, batch: &RecordBatch) -> Result<()> {
        let Some((indices, converter, seen)) = &mut self.key else {
            return Ok(());
        };
        let columns: Vec<_> = indices.iter().map(|i| batch.column(*i).clone()).collect();
        let rows = converter.convert_columns(&columns)?;
        for (i, row) in rows.iter().enumerate() {
            if !seen.insert(row.owned()) {
                let options = FormatOptions::default();
                let values = indices
                    .iter()
                    .map(|c| {
                        let value = ArrayFormatter::try_new(batch.column(*c).as_ref(), &options)
                            .map(|f| f.value(i).to_string())
                            .unwrap_or_default();
                        format!("{} = {value}", self.schema.field(*c).name())
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(PlannerError::DuplicateKey {
                    table: self.table.clone(),
                    detail: format!("the input holds {values} more than once"),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Checks `batch` (NULLs, vectors, repeated keys) and returns it with the collection's
    /// schema.
    pub(crate) fn check(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let base = self
            .rows_seen
            .fetch_add(batch.num_rows(), Ordering::Relaxed);
        let batch = self.conform(batch)?;
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            if !field.is_nullable() {
                if let Some(nulls) = column.logical_nulls() {
                    if let Some(i) = (0..nulls.len()).find(|i| nulls.is_null(*i)) {
                        return Err(PlannerError::NullInNotNullColumn {
                            table: self.table.clone(),
                            column: field.name().clone(),
                            row: base + i + 1,
                        }
                        .into());
                    }
                }
            }
            if let DataType::FixedSizeList(_, dim) = field.data_type() {
                check_finite(field.name(), column.as_ref(), *dim as usize, base)?;
            }
        }
        self.check_unique_keys(&batch)?;
        let out = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        self.rows_written
            .fetch_add(out.num_rows() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

/// Fails on the first NULL or non-finite component of a non-null vector.
fn check_finite(column: &str, array: &dyn Array, dim: usize, base: usize) -> Result<()> {
    if let Some(i) = first_null_element(array) {
        return Err(OperatorError::NullElement {
            context: format!("column '{column}'"),
            row: Some(base + i + 1),
        }
        .into());
    }
    fn first_bad<T: Copy>(
        list: &datafusion::arrow::array::FixedSizeListArray,
        values: &[T],
        dim: usize,
        is_finite: impl Fn(T) -> bool,
    ) -> Option<usize> {
        (0..list.len()).find(|&i| {
            let start = (list.offset() + i) * dim;
            list.is_valid(i) && !values[start..start + dim].iter().all(|v| is_finite(*v))
        })
    }
    let list = array.as_fixed_size_list();
    let values = list.values();
    let bad = if let Some(v) = values.as_primitive_opt::<Float32Type>() {
        first_bad(list, v.values(), dim, f32::is_finite)
    } else if let Some(v) = values.as_primitive_opt::<Float16Type>() {
        first_bad(list, v.values(), dim, |x: half::f16| x.is_finite())
    } else {
        None
    };
    match bad {
        Some(i) => Err(OperatorError::NonFinite {
            context: format!("column '{column}'"),
            row: Some(base + i + 1),
        }
        .into()),
        None => Ok(()),
    }
}

/// Rewrites Lance's write errors into Quiver's, naming the collection.
pub(crate) fn write_error(table: &str, e: lance::Error) -> DataFusionError {
    let message = e.to_string();
    if let Some(pos) = message.find("found matching row") {
        return PlannerError::DuplicateKey {
            table: table.to_string(),
            // Lance appends the source location after ", /"; keep only the key.
            detail: message[pos..]
                .lines()
                .next()
                .unwrap_or_default()
                .split(", /")
                .next()
                .unwrap_or_default()
                .to_string(),
        }
        .into();
    }
    // A validation error raised inside our stream comes back wrapped by Lance: unwrap it.
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl DataSink for CollectionSink {
    fn schema(&self) -> &SchemaRef {
        &self.input_schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let table = self.record.qualified_name();
        let rows_written = Arc::new(AtomicU64::new(0));
        let mut validator = Validator::new(
            table.clone(),
            self.table_schema.clone(),
            &self.record.primary_key,
            rows_written.clone(),
        )?;
        let checked: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            self.table_schema.clone(),
            data.map(move |batch| validator.check(batch?)),
        ));
        let dataset = Arc::new(
            self.catalog
                .open_keyed_dataset(&self.record)
                .await
                .map_err(external)?,
        );
        let key = self.record.primary_key.clone();
        match self.op {
            InsertOp::Append if key.is_empty() => {
                let params = self.catalog.write_params(WriteMode::Append);
                InsertBuilder::new(dataset)
                    .with_params(&params)
                    .execute_stream(checked)
                    .await
                    .map_err(|e| write_error(&table, e))?;
            }
            InsertOp::Overwrite => {
                let params = self.catalog.write_params(WriteMode::Overwrite);
                InsertBuilder::new(dataset)
                    .with_params(&params)
                    .execute_stream(checked)
                    .await
                    .map_err(|e| write_error(&table, e))?;
            }
            InsertOp::Append | InsertOp::Replace => {
                let when_matched = if self.op == InsertOp::Replace {
                    WhenMatched::UpdateAll
                } else {
                    WhenMatched::Fail
                };
                // Through the key index Lance's merge-insert would not record the keys it
                // inserted, and concurrent writers of one key would not conflict.
                MergeInsertBuilder::try_new(dataset, key.clone())
                    .map_err(|e| write_error(&table, e))?
                    .when_matched(when_matched)
                    .when_not_matched(WhenNotMatched::InsertAll)
                    .use_index(false)
                    .try_build()
                    .map_err(|e| write_error(&table, e))?
                    .execute(checked)
                    .await
                    .map_err(|e| write_error(&table, e))?;
            }
        }
        if !key.is_empty() {
            // The write has committed; the key index's upkeep must not undo that.
            if let Err(e) = self.catalog.maintain_key_index(&self.record).await {
                tracing::warn!("the key index of {table} was not brought up to date: {e}");
            }
        }
        Ok(rows_written.load(Ordering::Relaxed))
    }
}
