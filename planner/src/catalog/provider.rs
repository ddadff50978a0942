//! Quiver's catalog as DataFusion sees it: one catalog, `quiver`, whose schemas are the
//! databases, whose tables are the collections.
//!
//! Listings and table lookups come from the catalog state this process last read, without I/O:
//! whoever plans refreshes that state first, once (every statement does, and so does every
//! Flight SQL metadata request); probing for a newer catalog version again in each lookup cost
//! ~4% of a k-NN statement. Tables are opened asynchronously at their latest committed Lance
//! version, so every statement reads the newest data. A name `collection@snapshot` opens a
//! snapshot's pinned version, read-only (see [`crate::catalog::time_travel`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::Result;
use quiver_catalog::Catalog;

use crate::catalog::table::CollectionTable;
use crate::catalog::time_travel::split_snapshot_name;
use crate::error::external;

/// The name of Quiver's one DataFusion catalog.
pub const CATALOG_NAME: &str = "quiver";

/// The list of catalogs: just `quiver`.
#[derive(Debug)]
pub struct QuiverCatalogList {
    catalog: Arc<QuiverCatalogProvider>,
}

impl QuiverCatalogList {
    /// The catalog list over `catalog`.
    pub fn new(catalog: Arc<Catalog>, system: Arc<dyn SchemaProvider>) -> Self {
        Self {
            catalog: Arc::new(QuiverCatalogProvider { catalog, system }),
        }
    }
}

impl CatalogProviderList for QuiverCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG_NAME.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == CATALOG_NAME).then(|| self.catalog.clone() as Arc<dyn CatalogProvider>)
    }
}

/// The `quiver` catalog: databases as schemas, plus the system schema.
#[derive(Debug)]
pub struct QuiverCatalogProvider {
    catalog: Arc<Catalog>,
    system: Arc<dyn SchemaProvider>,
}

impl CatalogProvider for QuiverCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        let state = self.catalog.last_seen_state();
        let mut names: Vec<String> = state.databases.keys().cloned().collect();
        names.push(quiver_catalog::catalog::SYSTEM_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == quiver_catalog::catalog::SYSTEM_SCHEMA {
            return Some(self.system.clone());
        }
        let state = self.catalog.last_seen_state();
        state.databases.contains_key(name).then(|| {
            Arc::new(DatabaseSchema {
                catalog: self.catalog.clone(),
                database: name.to_string(),
            }) as Arc<dyn SchemaProvider>
        })
    }
}

/// One database: its collections are its tables.
#[derive(Debug)]
pub struct DatabaseSchema {
    catalog: Arc<Catalog>,
    database: String,
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog
            .last_seen_state()
            .collections_in(&self.database)
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let state = self.catalog.last_seen_state();
        if let Some((collection, snapshot)) = split_snapshot_name(name) {
            let (record, snapshot) = state
                .require_committed_snapshot(&self.database, collection, snapshot)
                .map_err(external)?;
            let record = record.clone();
            let dataset = self
                .catalog
                .open_snapshot(&record, snapshot)
                .await
                .map_err(external)?;
            let table =
                CollectionTable::new(self.catalog.clone(), record, Arc::new(dataset), true).await?;
            return Ok(Some(Arc::new(table)));
        }
        let Some(record) = state.collection(&self.database, name) else {
            return Ok(None);
        };
        let table = CollectionTable::open(self.catalog.clone(), record.clone()).await?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        let state = self.catalog.last_seen_state();
        match split_snapshot_name(name) {
            Some((collection, snapshot)) => state
                .collection(&self.database, collection)
                .is_some_and(|c| state.committed_snapshot(&c.id, snapshot).is_some()),
            None => state.collection(&self.database, name).is_some(),
        }
    }
}
