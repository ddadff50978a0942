//! A collection's primary key, declared to Lance as the dataset's unenforced primary key.
//!
//! Lance's merge-insert (Quiver's keyed `INSERT`, `REPLACE INTO`, keyed `UPDATE`, `COPY` and bulk
//! ingest) records the keys it inserted in its transaction when its join columns are the
//! dataset's primary key. Lance's commit then checks them against every transaction committed
//! since the write began (by this process or another over the same root): writers of the same
//! key conflict, and the later one runs its merge again on the newer version, where an `INSERT`
//! finds the key and fails with the duplicate-key error, and a `REPLACE` updates the row. So of
//! concurrent writers of one key exactly one inserts it, whatever process or server they run in.
//!
//! Collections get the declaration when they are created; a collection created before it was
//! made gets it on its first keyed write ([`Catalog::open_keyed_dataset`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use lance::datatypes::LANCE_UNENFORCED_PRIMARY_KEY_POSITION;
use lance::Dataset;

use crate::catalog::Catalog;
use crate::error::{CatalogError, Result};
use crate::model::CollectionRecord;

/// `schema` with the columns of `primary_key` declared, in order, as Lance's primary key.
pub fn with_primary_key(schema: SchemaRef, primary_key: &[String]) -> SchemaRef {
    if primary_key.is_empty() {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(
            |field| match primary_key.iter().position(|k| k == field.name()) {
                Some(position) => {
                    let mut metadata: HashMap<String, String> = field.metadata().clone();
                    let (key, value) = key_position(position);
                    metadata.insert(key.to_string(), value);
                    Field::clone(field).with_metadata(metadata)
                }
                None => Field::clone(field),
            },
        )
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The field metadata that makes a column the `position`-th (0-based) of Lance's primary key.
fn key_position(position: usize) -> (&'static str, String) {
    (
        LANCE_UNENFORCED_PRIMARY_KEY_POSITION,
        (position + 1).to_string(),
    )
}

/// Refuses a key column of `collection` whose type Lance's commit cannot compare between
/// concurrent writers (it records inserted keys of 32- and 64-bit integers, text and binary).
pub fn check_key_type(collection: &str, field: &Field) -> Result<()> {
    match field.data_type() {
        DataType::Int32
        | DataType::Int64
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Binary
        | DataType::LargeBinary => Ok(()),
        other => Err(CatalogError::InvalidRequest {
            message: format!(
                "primary key column '{}' of '{collection}' has type {other}; a key column is \
                 INT, BIGINT (signed or unsigned), VARCHAR, TEXT or BYTEA",
                field.name()
            ),
        }),
    }
}

/// Whether `dataset` declares exactly `primary_key` as its primary key.
fn declares(dataset: &Dataset, primary_key: &[String]) -> bool {
    let declared: Vec<&str> = dataset
        .schema()
        .unenforced_primary_key()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    declared == primary_key.iter().map(String::as_str).collect::<Vec<_>>()
}

impl Catalog {
    /// Opens the latest version of a keyed collection's dataset for a write, first declaring its
    /// primary key to Lance if the dataset does not yet (one metadata-only version).
    pub async fn open_keyed_dataset(&self, record: &CollectionRecord) -> Result<Dataset> {
        let mut dataset = self.open_dataset(record, None).await?;
        if record.primary_key.is_empty() || declares(&dataset, &record.primary_key) {
            return Ok(dataset);
        }
        let mut builder = dataset.update_field_metadata();
        for (position, column) in record.primary_key.iter().enumerate() {
            let (key, value) = key_position(position);
            builder = builder.update(column.as_str(), [(key, value.as_str())])?;
        }
        if let Err(e) = builder.await {
            // Another writer may have declared it first (it can be declared once): read again.
            let latest = self.open_dataset(record, None).await?;
            if declares(&latest, &record.primary_key) {
                return Ok(latest);
            }
            return Err(CatalogError::from(e));
        }
        Ok(dataset)
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;
    use crate::location::DataRoot;
    use crate::DEFAULT_DATABASE;

    #[tokio::test]
    async fn a_collection_without_the_declaration_gets_it_on_its_first_keyed_write() {
        let dir = tempfile::tempdir().expect("dir");
        let root = DataRoot::open(&dir.path().to_string_lossy())
            .await
            .expect("root");
        let catalog = Catalog::open(root).await.expect("catalog");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("label", DataType::Utf8, true),
        ]));
        let keyed = catalog
            .create_collection(
                DEFAULT_DATABASE,
                "keyed",
                schema.clone(),
                vec!["id".into()],
                false,
            )
            .await
            .expect("create")
            .expect("new");
        let created = catalog.open_dataset(&keyed, None).await.expect("open");
        assert!(declares(&created, &keyed.primary_key));

        // A dataset written without the declaration, under a keyed record (as collections made
        // before the declaration existed are).
        let legacy = catalog
            .create_collection(DEFAULT_DATABASE, "legacy", schema, vec![], false)
            .await
            .expect("create")
            .expect("new");
        let id = legacy.id.clone();
        catalog
            .commit(|state| {
                if let Some(record) = state.collections.get_mut(&id) {
                    record.primary_key = vec!["id".into()];
                }
                Ok(())
            })
            .await
            .expect("commit");
        let legacy = catalog
            .collection(DEFAULT_DATABASE, "legacy")
            .await
            .expect("record");
        let before = catalog.open_dataset(&legacy, None).await.expect("open");
        assert!(before.schema().unenforced_primary_key().is_empty());
        let declared = catalog.open_keyed_dataset(&legacy).await.expect("declare");
        assert!(declares(&declared, &legacy.primary_key));
        assert_eq!(declared.version().version, before.version().version + 1);
        // Declared once: the next write opens it as it is.
        let again = catalog.open_keyed_dataset(&legacy).await.expect("again");
        assert_eq!(again.version().version, declared.version().version);
    }
}
