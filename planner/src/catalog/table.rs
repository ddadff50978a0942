//! A collection as a DataFusion table: scans go to Lance (with projection and filter push-down),
//! writes become new Lance versions.
//!
//! Reads see the version that was latest when the statement was planned. Writes open the latest
//! version when they run and commit one new version each, so a failed write leaves the
//! collection exactly as it was.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{not_impl_err, Constraint, Constraints, Result};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use lance::datafusion::LanceTableProvider;
use lance::Dataset;
use quiver_catalog::indices::{vector_indices, VectorIndexInfo};
use quiver_catalog::{Catalog, CollectionRecord};
use quiver_operators::functions::calls_vector_function;

use crate::catalog::scan::CollectionScanExec;
use crate::error::external;
use crate::write::dml::{Delete, DmlExec};
use crate::write::sink::CollectionSink;
use crate::write::update::{keyed_update, keyless_update};

/// A collection (or a read-only version of one) as a DataFusion table.
#[derive(Debug)]
pub struct CollectionTable {
    catalog: Arc<Catalog>,
    record: CollectionRecord,
    dataset: Arc<Dataset>,
    scan: LanceTableProvider,
    schema: SchemaRef,
    constraints: Option<Constraints>,
    indices: Arc<Vec<VectorIndexInfo>>,
    read_only: bool,
}

impl CollectionTable {
    /// Opens the collection at its latest version.
    pub async fn open(catalog: Arc<Catalog>, record: CollectionRecord) -> Result<Self> {
        let dataset = catalog
            .open_dataset(&record, None)
            .await
            .map_err(external)?;
        Self::new(catalog, record, Arc::new(dataset), false).await
    }

    /// Wraps an opened dataset; `read_only` for versions that must not be written (snapshots).
    pub async fn new(
        catalog: Arc<Catalog>,
        record: CollectionRecord,
        dataset: Arc<Dataset>,
        read_only: bool,
    ) -> Result<Self> {
        let indices = Arc::new(vector_indices(&dataset).await.map_err(external)?);
        let scan = LanceTableProvider::new(dataset.clone(), false, false);
        let schema = scan.schema();
        let key: Vec<usize> = record
            .primary_key
            .iter()
            .filter_map(|k| schema.index_of(k).ok())
            .collect();
        let constraints = (!key.is_empty())
            .then(|| Constraints::new_unverified(vec![Constraint::PrimaryKey(key)]));
        Ok(Self {
            catalog,
            record,
            dataset,
            scan,
            schema,
            constraints,
            indices,
            read_only,
        })
    }

    /// The collection's catalog record.
    pub fn record(&self) -> &CollectionRecord {
        &self.record
    }

    /// The dataset version this table reads.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The catalog the collection belongs to.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Whether this is a pinned version (a snapshot), which is never written.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return not_impl_err!(
                "'{}' at version {} is read-only",
                self.record.qualified_name(),
                self.dataset.version_id()
            );
        }
        Ok(())
    }
}

#[async_trait]
impl TableProvider for CollectionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Lance takes the limit as an `i64`; a larger one (`OFFSET` near the top of BIGINT adds
        // to it) would overflow there. Such a limit keeps every row, as no limit does; the
        // limit above the scan still applies the statement's `OFFSET` and `LIMIT`.
        let limit = limit.filter(|l| i64::try_from(*l).is_ok());
        let inner = self.scan.scan(state, projection, filters, limit).await?;
        Ok(Arc::new(CollectionScanExec::new(
            self.record.qualified_name(),
            self.dataset.clone(),
            self.indices.clone(),
            filters.to_vec(),
            inner,
        )))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if calls_vector_function(f) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Exact
                }
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.check_writable()?;
        let sink = CollectionSink::new(
            self.catalog.clone(),
            self.record.clone(),
            self.schema.clone(),
            insert_op,
        )?;
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        _state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.check_writable()?;
        Ok(Arc::new(DmlExec::new(Arc::new(Delete::new(
            self.catalog.clone(),
            self.record.clone(),
            filters.into_iter().reduce(Expr::and),
        )))))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.check_writable()?;
        if !self.record.primary_key.is_empty() {
            let scan = self.scan(state, None, &filters, None).await?;
            return keyed_update(
                state,
                self.catalog.clone(),
                self.record.clone(),
                self.schema.clone(),
                scan,
                assignments,
                filters,
            );
        }
        keyless_update(
            state,
            self.catalog.clone(),
            self.record.clone(),
            self.schema.clone(),
            assignments,
            filters,
        )
    }

    async fn truncate(&self, _state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        self.check_writable()?;
        Ok(Arc::new(DmlExec::new(Arc::new(Delete::new(
            self.catalog.clone(),
            self.record.clone(),
            None,
        )))))
    }
}
