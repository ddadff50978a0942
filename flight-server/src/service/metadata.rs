//! Catalog metadata for Flight SQL clients: catalogs, schemas (Quiver databases), tables
//! (collections and system tables), table types, primary keys, SqlInfo and XDBC type info.
//!
//! Invariants:
//! - Every listing starts by refreshing the catalog state, so it shows everything committed
//!   before the request, by this server or another over the same data root.
//! - The schema announced in a `FlightInfo` is built from the same command as the batch sent by
//!   `DoGet` (it differs with `include_schema`), so the two always agree.
//! - Filters (catalog, LIKE patterns, table types) are applied by arrow-flight's builders, the
//!   reference implementation of the spec's matching rules.

use std::sync::Arc;

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, Nullable, Searchable, SqlInfo, SqlNullOrdering,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType,
};
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use quiver_catalog::catalog::SYSTEM_SCHEMA;
use quiver_catalog::{Catalog, DEFAULT_DATABASE};
use quiver_planner::catalog::provider::CATALOG_NAME;
use quiver_planner::QuiverSession;
use tonic::Status;

use crate::config::QueryLimits;
use crate::error::{status_from_catalog, status_from_datafusion};

/// The table type of collections.
pub const TABLE: &str = "TABLE";
/// The table type of the `quiver` system schema's tables.
pub const SYSTEM_TABLE: &str = "SYSTEM TABLE";

/// A metadata request.
#[derive(Debug, Clone)]
pub enum MetadataCommand {
    /// `CommandGetCatalogs`.
    Catalogs(CommandGetCatalogs),
    /// `CommandGetDbSchemas`.
    Schemas(CommandGetDbSchemas),
    /// `CommandGetTables`.
    Tables(CommandGetTables),
    /// `CommandGetTableTypes`.
    TableTypes(CommandGetTableTypes),
    /// `CommandGetPrimaryKeys`.
    PrimaryKeys(CommandGetPrimaryKeys),
    /// `CommandGetExportedKeys`: Quiver has no foreign keys, so always empty.
    ExportedKeys(CommandGetExportedKeys),
    /// `CommandGetImportedKeys`: always empty.
    ImportedKeys(CommandGetImportedKeys),
    /// `CommandGetCrossReference`: always empty.
    CrossReference(CommandGetCrossReference),
    /// `CommandGetSqlInfo`.
    SqlInfo(CommandGetSqlInfo),
    /// `CommandGetXdbcTypeInfo`.
    XdbcTypeInfo(CommandGetXdbcTypeInfo),
}

/// Answers metadata requests over one catalog.
pub struct Metadata {
    catalog: Arc<Catalog>,
    /// The session listings read the catalog through (they change nothing in it).
    session: QuiverSession,
    sql_info: SqlInfoData,
    type_info: XdbcTypeInfoData,
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("root", &self.catalog.root().display())
            .finish_non_exhaustive()
    }
}

fn arrow_status(e: ArrowError) -> Status {
    Status::internal(e.to_string())
}

fn flight_status(e: FlightError) -> Status {
    Status::internal(e.to_string())
}

impl Metadata {
    /// Metadata over `catalog`.
    pub fn new(catalog: Arc<Catalog>, limits: &QueryLimits) -> Result<Self, FlightError> {
        Ok(Self {
            session: QuiverSession::new(catalog.clone()),
            catalog,
            sql_info: sql_info(limits)?,
            type_info: type_info()?,
        })
    }

    /// The schema of a request's result.
    pub fn schema(&self, command: &MetadataCommand) -> SchemaRef {
        match command {
            MetadataCommand::Catalogs(c) => (*c).into_builder().schema(),
            MetadataCommand::Schemas(c) => c.clone().into_builder().schema(),
            MetadataCommand::Tables(c) => c.clone().into_builder().schema(),
            MetadataCommand::TableTypes(c) => (*c).into_builder().schema(),
            MetadataCommand::PrimaryKeys(_) => primary_keys_schema(),
            MetadataCommand::ExportedKeys(_)
            | MetadataCommand::ImportedKeys(_)
            | MetadataCommand::CrossReference(_) => foreign_keys_schema(),
            MetadataCommand::SqlInfo(c) => c.clone().into_builder(&self.sql_info).schema(),
            MetadataCommand::XdbcTypeInfo(c) => (*c).into_builder(&self.type_info).schema(),
        }
    }

    /// A request's result.
    pub async fn batch(&self, command: MetadataCommand) -> Result<RecordBatch, Status> {
        match command {
            MetadataCommand::Catalogs(c) => {
                let mut builder = c.into_builder();
                builder.append(CATALOG_NAME);
                builder.build().map_err(flight_status)
            }
            MetadataCommand::Schemas(c) => {
                let session = self.session().await?;
                let mut builder = c.into_builder();
                for schema in schema_names(&session) {
                    builder.append(CATALOG_NAME, schema);
                }
                builder.build().map_err(flight_status)
            }
            MetadataCommand::Tables(c) => self.tables(c).await,
            MetadataCommand::TableTypes(c) => {
                let mut builder = c.into_builder();
                builder.append(TABLE);
                builder.append(SYSTEM_TABLE);
                builder.build().map_err(flight_status)
            }
            MetadataCommand::PrimaryKeys(c) => self.primary_keys(c).await,
            MetadataCommand::ExportedKeys(_)
            | MetadataCommand::ImportedKeys(_)
            | MetadataCommand::CrossReference(_) => {
                Ok(RecordBatch::new_empty(foreign_keys_schema()))
            }
            MetadataCommand::SqlInfo(c) => c
                .into_builder(&self.sql_info)
                .build()
                .map_err(flight_status),
            MetadataCommand::XdbcTypeInfo(c) => c
                .into_builder(&self.type_info)
                .build()
                .map_err(flight_status),
        }
    }

    /// A session over the freshly read catalog state.
    async fn session(&self) -> Result<QuiverSession, Status> {
        self.catalog
            .fresh_state()
            .await
            .map_err(|e| status_from_catalog(&e))?;
        Ok(self.session.clone())
    }

    async fn tables(&self, command: CommandGetTables) -> Result<RecordBatch, Status> {
        let session = self.session().await?;
        let mut builder = command.into_builder();
        let Some(catalog) = session.context().catalog(CATALOG_NAME) else {
            return builder.build().map_err(flight_status);
        };
        let empty = Schema::empty();
        for schema_name in schema_names(&session) {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let table_type = if schema_name == SYSTEM_SCHEMA {
                SYSTEM_TABLE
            } else {
                TABLE
            };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                let table_schema = if builder.include_schema() {
                    match schema
                        .table(&name)
                        .await
                        .map_err(|e| status_from_datafusion(&e))?
                    {
                        Some(table) => table.schema(),
                        None => continue,
                    }
                } else {
                    Arc::new(empty.clone())
                };
                builder
                    .append(CATALOG_NAME, &schema_name, &name, table_type, &table_schema)
                    .map_err(flight_status)?;
            }
        }
        builder.build().map_err(flight_status)
    }

    async fn primary_keys(&self, command: CommandGetPrimaryKeys) -> Result<RecordBatch, Status> {
        let database = command
            .db_schema
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let in_catalog = command.catalog.as_deref().is_none_or(|c| c == CATALOG_NAME);
        let state = self
            .catalog
            .state()
            .await
            .map_err(|e| status_from_catalog(&e))?;
        let keys = state
            .collection(&database, &command.table)
            .filter(|_| in_catalog)
            .map(|c| c.primary_key.clone())
            .unwrap_or_default();
        let n = keys.len();
        let sequence: Vec<i32> = (1..=n)
            .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![CATALOG_NAME; n])),
            Arc::new(StringArray::from(vec![database.as_str(); n])),
            Arc::new(StringArray::from(vec![command.table.as_str(); n])),
            Arc::new(StringArray::from(keys)),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(Int32Array::from(sequence)),
        ];
        RecordBatch::try_new(primary_keys_schema(), columns).map_err(arrow_status)
    }
}

/// The databases and the system schema, sorted.
fn schema_names(session: &QuiverSession) -> Vec<String> {
    let mut names = session
        .context()
        .catalog(CATALOG_NAME)
        .map(|c| c.schema_names())
        .unwrap_or_default();
    names.sort();
    names
}

/// The result schema of `CommandGetPrimaryKeys`, as the Flight SQL spec defines it.
fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The result schema of the foreign key commands, as the Flight SQL spec defines it.
fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// What the server tells clients about itself.
fn sql_info(limits: &QueryLimits) -> Result<SqlInfoData, FlightError> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Quiver");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    let timeout = limits
        .timeout
        .map(|t| i32::try_from(t.as_secs().max(1)).unwrap_or(i32::MAX))
        .unwrap_or(0);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, timeout);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(
        SqlInfo::SqlKeywords,
        &["VECTOR", "HALFVEC", "COPY", "DESCRIBE"][..],
    );
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.build()
}

/// One row of the XDBC type table.
fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    quoted: bool,
) -> XdbcTypeInfo {
    let numeric = matches!(
        data_type,
        XdbcDataType::XdbcTinyint
            | XdbcDataType::XdbcSmallint
            | XdbcDataType::XdbcInteger
            | XdbcDataType::XdbcBigint
            | XdbcDataType::XdbcReal
            | XdbcDataType::XdbcFloat
            | XdbcDataType::XdbcDouble
    );
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size,
        literal_prefix: quoted.then(|| "'".to_string()),
        literal_suffix: quoted.then(|| "'".to_string()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: quoted,
        searchable: Searchable::Full,
        unsigned_attribute: numeric.then_some(false),
        fixed_prec_scale: false,
        auto_increment: numeric.then_some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: numeric.then_some(2),
        interval_precision: None,
    }
}

/// The SQL types Quiver's DDL accepts (vectors, `VECTOR(n)`, arrive as Arrow fixed-size lists
/// and have no XDBC code).
fn type_info() -> Result<XdbcTypeInfoData, FlightError> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    b.append(xdbc("BOOLEAN", XdbcDataType::XdbcBit, Some(1), false));
    b.append(xdbc("TINYINT", XdbcDataType::XdbcTinyint, Some(8), false));
    b.append(xdbc(
        "SMALLINT",
        XdbcDataType::XdbcSmallint,
        Some(16),
        false,
    ));
    b.append(xdbc("INTEGER", XdbcDataType::XdbcInteger, Some(32), false));
    b.append(xdbc("BIGINT", XdbcDataType::XdbcBigint, Some(64), false));
    b.append(xdbc("REAL", XdbcDataType::XdbcReal, Some(24), false));
    b.append(xdbc("DOUBLE", XdbcDataType::XdbcDouble, Some(53), false));
    b.append(xdbc("VARCHAR", XdbcDataType::XdbcVarchar, None, true));
    b.append(xdbc("BYTEA", XdbcDataType::XdbcVarbinary, None, true));
    b.append(xdbc("DATE", XdbcDataType::XdbcDate, None, true));
    b.append(xdbc("TIMESTAMP", XdbcDataType::XdbcTimestamp, None, true));
    b.build()
}
