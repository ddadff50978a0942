//! `UPDATE` of a collection without a primary key, in Lance's rewrite-rows mode.
//!
//! The rows that match the filter are read with their row addresses and given their new values.
//! The new rows are checked as an `INSERT` checks them (a vector of the wrong dimension, a NaN
//! component, NULL in a NOT NULL column) and written as new fragments; the old rows are deleted
//! from their fragments by deletion vectors. One Lance `Update` transaction commits both, so the
//! statement makes one new version, and a failure before the commit leaves the collection as it
//! was (data files written before the failure are referenced by no version, and GC removes them).
//!
//! A concurrent write that Lance reports as a retryable conflict (it touched the same fragments)
//! makes the update run again on the new latest version.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{AsArray, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{internal_datafusion_err, internal_err, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use lance::dataset::scanner::RowAddrTreeMap;
use lance::dataset::transaction::{Operation, Transaction, UpdateMode};
use lance::dataset::{CommitBuilder, InsertBuilder, WriteMode};
use lance::Dataset;
use lance_core::ROW_ADDR;
use lance_table::format::Fragment;
use quiver_catalog::{Catalog, CollectionRecord};

use crate::error::external;
use crate::write::dml::{filter_text, DmlAction};
use crate::write::sink::{write_error, Validator};

/// How often an update is run again after a retryable commit conflict (Lance's default).
const MAX_ATTEMPTS: u32 = 10;

/// How many fragments get their deletion files written at once.
const DELETION_CONCURRENCY: usize = 8;

/// `UPDATE` of a collection without a primary key: what it does, independent of the version it
/// runs on.
#[derive(Debug, Clone)]
pub struct RewriteRows {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) record: CollectionRecord,
    /// The collection's schema.
    pub(crate) schema: SchemaRef,
    /// The part of the filter Lance's scan evaluates (none of Quiver's vector functions).
    pub(crate) pushed_filter: Option<Expr>,
    /// The rest of the filter, evaluated over the scanned rows.
    pub(crate) residual_filter: Option<Arc<dyn PhysicalExpr>>,
    /// The new value of every column, in schema order (the column itself where not assigned).
    pub(crate) values: Vec<Arc<dyn PhysicalExpr>>,
    /// The statement's assignments (the columns that change, shown by `EXPLAIN`).
    pub(crate) assignments: Vec<(String, Expr)>,
    /// The statement's whole filter, for `EXPLAIN`.
    pub(crate) filter: Option<Expr>,
}

/// The rows of one attempt, written but not committed.
struct RewrittenRows {
    /// The new rows, as fragments without ids.
    fragments: Vec<Fragment>,
    /// Row addresses of the old rows.
    addresses: Vec<u64>,
}

impl RewriteRows {
    /// Runs the update on the latest version; returns the number of rows updated.
    async fn run(self) -> Result<u64> {
        let table = self.record.qualified_name();
        let mut attempt = 1;
        loop {
            let dataset = Arc::new(
                self.catalog
                    .open_dataset(&self.record, None)
                    .await
                    .map_err(external)?,
            );
            let rows = self.write_new_rows(&dataset).await?;
            let count = rows.addresses.len() as u64;
            if count == 0 {
                return Ok(0);
            }
            match self.commit(dataset, rows).await {
                Ok(()) => return Ok(count),
                Err(lance::Error::RetryableCommitConflict { .. }) if attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(write_error(&table, e)),
            }
        }
    }

    /// The matching rows of one scan batch (collection columns, then `_rowaddr`) with their new
    /// values; appends their addresses to `addresses`.
    fn new_values(&self, batch: RecordBatch, addresses: &Mutex<Vec<u64>>) -> Result<RecordBatch> {
        let batch = match &self.residual_filter {
            Some(filter) => {
                let mask = filter.evaluate(&batch)?.into_array(batch.num_rows())?;
                filter_record_batch(&batch, mask.as_boolean())?
            }
            None => batch,
        };
        let address = batch
            .column_by_name(ROW_ADDR)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| internal_datafusion_err!("the update's scan has no {ROW_ADDR}"))?;
        addresses
            .lock()
            .map_err(|_| internal_datafusion_err!("row address list poisoned"))?
            .extend(address.values().iter().copied());
        let columns = self
            .values
            .iter()
            .map(|value| value.evaluate(&batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        // Values keep the types their expressions give; the validator converts them.
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(field, column)| Field::new(field.name(), column.data_type().clone(), true))
            .collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?)
    }

    /// Reads the matching rows of `dataset` and writes their new values as uncommitted fragments.
    async fn write_new_rows(&self, dataset: &Arc<Dataset>) -> Result<RewrittenRows> {
        let table = self.record.qualified_name();
        let mut scanner = dataset.scan();
        scanner.with_row_address();
        if let Some(filter) = &self.pushed_filter {
            scanner.filter_expr(filter.clone());
        }
        let scan = scanner.try_into_stream().await?;
        let addresses = Arc::new(Mutex::new(Vec::new()));
        let mut validator = Validator::new(
            table.clone(),
            self.schema.clone(),
            &[],
            Arc::new(AtomicU64::new(0)),
        )?;
        let rewrite = self.clone();
        let seen = addresses.clone();
        let new_rows: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            scan.map(move |batch| validator.check(rewrite.new_values(batch?, &seen)?)),
        ));
        let params = self.catalog.write_params(WriteMode::Append);
        let transaction = InsertBuilder::new(dataset.clone())
            .with_params(&params)
            .execute_uncommitted_stream(new_rows)
            .await
            .map_err(|e| write_error(&table, e))?;
        let Operation::Append { fragments } = transaction.operation else {
            return internal_err!("writing the updated rows gave {}", transaction.operation);
        };
        let addresses = std::mem::take(
            &mut *addresses
                .lock()
                .map_err(|_| internal_datafusion_err!("row address list poisoned"))?,
        );
        Ok(RewrittenRows {
            fragments,
            addresses,
        })
    }

    /// Deletes the old rows from their fragments and commits them with the new ones.
    async fn commit(&self, dataset: Arc<Dataset>, rows: RewrittenRows) -> lance::Result<()> {
        let mut offsets: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for address in &rows.addresses {
            // A row address is the fragment id in the high half and the row offset in the low.
            offsets
                .entry(address >> 32)
                .or_default()
                .push(*address as u32);
        }
        let touched: Vec<_> = dataset
            .get_fragments()
            .into_iter()
            .filter_map(|fragment| {
                let deleted = offsets.remove(&(fragment.id() as u64))?;
                Some((fragment, deleted))
            })
            .collect();
        let changed: Vec<_> = futures::stream::iter(touched)
            .map(|(fragment, deleted)| async move {
                let id = fragment.id() as u64;
                let remaining = fragment.extend_deletions(deleted).await?;
                Ok::<_, lance::Error>((id, remaining))
            })
            .buffer_unordered(DELETION_CONCURRENCY)
            .try_collect()
            .await?;
        let mut updated_fragments = Vec::new();
        let mut removed_fragment_ids = Vec::new();
        for (id, remaining) in changed {
            match remaining {
                Some(fragment) => updated_fragments.push(fragment.metadata().clone()),
                None => removed_fragment_ids.push(id),
            }
        }
        let operation = Operation::Update {
            removed_fragment_ids,
            updated_fragments,
            new_fragments: rows.fragments,
            // Rewritten rows move to new fragments, so no index covers them any more.
            fields_modified: vec![],
            compacted_sstables: vec![],
            fields_for_preserving_frag_bitmap: assigned_field_ids(&dataset, &self.assignments),
            update_mode: Some(UpdateMode::RewriteRows),
            inserted_rows_filter: None,
            updated_fragment_offsets: None,
        };
        let transaction = Transaction::new(dataset.manifest().version, operation, None);
        let affected: RowAddrTreeMap = rows.addresses.iter().copied().collect();
        CommitBuilder::new(dataset)
            .with_affected_rows(affected)
            .execute(transaction)
            .await?;
        Ok(())
    }
}

/// The Lance field ids of the columns `assignments` set in `dataset`, and of their children (a
/// vector's items).
fn assigned_field_ids(dataset: &Dataset, assignments: &[(String, Expr)]) -> Vec<u32> {
    fn collect(field: &lance_core::datatypes::Field, ids: &mut Vec<u32>) {
        if let Ok(id) = u32::try_from(field.id) {
            ids.push(id);
        }
        for child in &field.children {
            collect(child, ids);
        }
    }
    let mut ids = Vec::new();
    for (column, _) in assignments {
        if let Some(field) = dataset.schema().field(column) {
            collect(field, &mut ids);
        }
    }
    ids
}

impl DmlAction for RewriteRows {
    fn name(&self) -> &'static str {
        "RewriteRowsExec"
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table={}, set=[{}], filter={}",
            self.record.qualified_name(),
            self.assignments
                .iter()
                .map(|(c, e)| format!("{c} = {e}"))
                .collect::<Vec<_>>()
                .join(", "),
            filter_text(self.filter.as_ref())
        )
    }

    fn run(&self) -> BoxFuture<'static, Result<u64>> {
        Box::pin(self.clone().run())
    }
}
