//! Bulk ingest (`CommandStatementIngest`, what `adbc_ingest` sends): a client's Arrow stream
//! written into a collection.
//!
//! Invariants:
//! - The rows stream through Quiver's collection sink (the same path as `INSERT`, with its
//!   validation: NOT NULL, finite vectors, primary keys) as one Lance transaction: a failure at
//!   any point, including the client disconnecting mid-stream, commits nothing.
//! - A collection the ingest created is dropped again if the write fails, so a failed ingest
//!   leaves no empty collection behind.
//! - The work runs on its own task, so the clean-up above happens even when the client is gone.
//! - Columns are matched by name; each is converted to the collection's type (vectors through
//!   `to_vector`, which reports a wrong dimension by column name).
//! - `replace` keeps the collection (its schema, primary key and snapshots) and overwrites its
//!   rows in one new version.

use std::sync::{Arc, Mutex};

use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Column, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{cast, Expr, LogicalPlanBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::TryStreamExt;
use quiver_catalog::CatalogError;
use quiver_planner::catalog::provider::CATALOG_NAME;
use quiver_planner::write::vector_cast::to_vector_expr;
use tonic::Status;

use crate::error::{status_from_catalog, status_from_datafusion, FlightServerError};
use crate::service::execution::{affected_rows, Executor};
use crate::service::input::{decode, InputBatches};

/// What an ingest does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Append,
    Replace,
}

/// Ingests the client's stream as `command` says, into `database` unless the command names
/// one; returns the number of rows written.
pub async fn ingest(
    executor: &Executor,
    command: CommandStatementIngest,
    stream: PeekableFlightDataStream,
    database: String,
) -> Result<i64, Status> {
    let executor = executor.clone();
    tokio::spawn(async move { run(executor, command, stream, database).await })
        .await
        .map_err(|e| Status::from(FlightServerError::Internal(e.to_string())))?
}

async fn run(
    executor: Executor,
    command: CommandStatementIngest,
    stream: PeekableFlightDataStream,
    database: String,
) -> Result<i64, Status> {
    let invalid = |m: &str| Status::from(FlightServerError::InvalidRequest(m.to_string()));
    if command.temporary {
        return Err(invalid("temporary tables are not supported"));
    }
    if command.transaction_id.is_some() {
        return Err(invalid("transactions are not supported"));
    }
    if let Some(catalog) = command.catalog.as_deref() {
        if catalog != CATALOG_NAME {
            return Err(invalid(&format!(
                "unknown catalog '{catalog}': Quiver has one catalog, '{CATALOG_NAME}'"
            )));
        }
    }
    if command.table.is_empty() {
        return Err(invalid("the target table name is empty"));
    }
    if !command.options.is_empty() {
        let mut names: Vec<&str> = command.options.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(invalid(&format!(
            "unknown ingest option(s) {}: Quiver's ingest takes none",
            names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let options = command.table_definition_options.ok_or_else(|| {
        invalid("table_definition_options are required (if_not_exist, if_exists)")
    })?;
    let database = command.schema.clone().unwrap_or(database);
    let table = command.table.clone();

    let catalog = executor.catalog();
    let state = catalog.state().await.map_err(|e| status_from_catalog(&e))?;
    let exists = state.collection(&database, &table).is_some();
    let action =
        match (exists, options.if_not_exist(), options.if_exists()) {
            (true, _, TableExistsOption::Append) => Action::Append,
            (true, _, TableExistsOption::Replace) => Action::Replace,
            (true, _, TableExistsOption::Fail) => {
                return Err(status_from_catalog(
                    &CatalogError::CollectionAlreadyExists {
                        database,
                        name: table,
                    },
                ))
            }
            (true, _, TableExistsOption::Unspecified) => {
                return Err(invalid(
                    "the table exists and if_exists is unspecified: choose fail, append or replace",
                ))
            }
            (false, TableNotExistOption::Create, _) => Action::Create,
            (false, TableNotExistOption::Fail, _) => {
                return Err(status_from_catalog(&CatalogError::CollectionNotFound {
                    database,
                    name: table,
                }))
            }
            (false, TableNotExistOption::Unspecified, _) => return Err(invalid(
                "the table does not exist and if_not_exist is unspecified: choose create or fail",
            )),
        };
    let (input_schema, batches) = decode(stream).await?;
    if action == Action::Create {
        let schema = collection_schema(&input_schema).map_err(|m| invalid(&m))?;
        catalog
            .create_collection(&database, &table, schema, Vec::new(), false)
            .await
            .map_err(|e| status_from_catalog(&e))?;
    }
    let written = write(&executor, &database, &table, input_schema, batches, action).await;
    if written.is_err() && action == Action::Create {
        if let Err(e) = catalog.drop_collection(&database, &table, true, true).await {
            tracing::warn!("dropping '{database}.{table}' after a failed ingest failed: {e}");
        }
    }
    written
}

/// Streams the input into the collection with the collection's sink.
async fn write(
    executor: &Executor,
    database: &str,
    table: &str,
    input_schema: SchemaRef,
    batches: InputBatches,
    action: Action,
) -> Result<i64, Status> {
    let sql_error = |e: DataFusionError| status_from_datafusion(&e);
    let session = executor.session();
    let reference = TableReference::full(CATALOG_NAME, database, table);
    let target = session
        .context()
        .table_provider(reference.clone())
        .await
        .map_err(sql_error)?;
    let source = StreamingTable::try_new(
        input_schema.clone(),
        vec![Arc::new(OneShot::new(input_schema.clone(), batches))],
    )
    .map_err(sql_error)?;
    let target_schema = target.schema();
    let projection = conversions(&input_schema, &target_schema)
        .map_err(|m| Status::from(FlightServerError::InvalidRequest(m)))?;
    let op = match action {
        Action::Replace => InsertOp::Overwrite,
        Action::Create | Action::Append => InsertOp::Append,
    };
    let plan = LogicalPlanBuilder::scan("ingest", provider_as_source(Arc::new(source)), None)
        .and_then(|b| b.project(projection))
        .and_then(|b| b.build())
        .and_then(|input| {
            LogicalPlanBuilder::insert_into(input, reference, provider_as_source(target), op)
        })
        .and_then(|b| b.build())
        .map_err(sql_error)?;
    let df = session
        .context()
        .execute_logical_plan(plan)
        .await
        .map_err(sql_error)?;
    let batches = executor.run_to_completion(df, None).await?;
    Ok(affected_rows(&batches).max(0))
}

/// One expression per collection column: the input column of that name, converted.
fn conversions(input: &Schema, target: &Schema) -> Result<Vec<Expr>, String> {
    let missing: Vec<&str> = target
        .fields()
        .iter()
        .filter(|f| input.field_with_name(f.name()).is_err())
        .map(|f| f.name().as_str())
        .collect();
    let extra: Vec<&str> = input
        .fields()
        .iter()
        .filter(|f| target.field_with_name(f.name()).is_err())
        .map(|f| f.name().as_str())
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "the data's columns do not match the collection's: missing [{}], unknown [{}]",
            missing.join(", "),
            extra.join(", ")
        ));
    }
    Ok(target
        .fields()
        .iter()
        .map(|f| {
            let column = Expr::Column(Column::new_unqualified(f.name()));
            let source_type = input
                .field_with_name(f.name())
                .map(|s| s.data_type().clone())
                .unwrap_or(DataType::Null);
            let converted = if &source_type == f.data_type() {
                column
            } else {
                to_vector_expr(column.clone(), f.data_type(), f.name())
                    .unwrap_or_else(|| cast(column, f.data_type().clone()))
            };
            converted.alias(f.name())
        })
        .collect())
}

/// The schema of a collection created from ingested data: the data's schema with view and
/// dictionary types replaced by plain ones (what Lance stores).
fn collection_schema(input: &Schema) -> Result<SchemaRef, String> {
    let fields = input
        .fields()
        .iter()
        .map(|f| {
            let data_type = match f.data_type() {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                DataType::Dictionary(_, value) => value.as_ref().clone(),
                DataType::Null => {
                    return Err(format!(
                        "column '{}' has no type (all NULL): give it one",
                        f.name()
                    ))
                }
                other => other.clone(),
            };
            Ok(Field::new(f.name(), data_type, f.is_nullable()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if fields.is_empty() {
        return Err("the data has no columns".into());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// A partition that yields the client's stream once.
struct OneShot {
    schema: SchemaRef,
    batches: Mutex<Option<InputBatches>>,
}

impl OneShot {
    fn new(schema: SchemaRef, batches: InputBatches) -> Self {
        Self {
            schema,
            batches: Mutex::new(Some(batches)),
        }
    }
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot")
            .field("schema", &self.schema)
            .finish()
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self
            .batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let stream: InputBatches = match taken {
            Some(batches) => batches,
            None => Box::pin(futures::stream::once(async {
                Err(FlightServerError::Internal(
                    "the ingest stream was read twice".into(),
                ))
            })),
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream.map_err(DataFusionError::from),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_by_name_and_convert_to_the_collection_types() {
        let target = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "embedding",
                DataType::FixedSizeList(
                    Arc::new(Field::new_list_field(DataType::Float32, true)),
                    2,
                ),
                true,
            ),
        ]);
        let input = Schema::new(vec![
            Field::new(
                "embedding",
                DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
                true,
            ),
            Field::new("id", DataType::Int64, true),
        ]);
        let exprs = conversions(&input, &target).expect("compatible");
        assert_eq!(exprs.len(), 2);
        assert_eq!(exprs[0].schema_name().to_string(), "id");
        assert!(exprs[1].to_string().contains("to_vector"), "{}", exprs[1]);

        let wrong = Schema::new(vec![Field::new("ident", DataType::Int64, true)]);
        let err = conversions(&wrong, &target).expect_err("mismatch");
        assert!(
            err.contains("missing [id, embedding], unknown [ident]"),
            "{err}"
        );
    }

    #[test]
    fn created_collections_store_plain_types() {
        let input = Schema::new(vec![
            Field::new("a", DataType::Utf8View, true),
            Field::new(
                "b",
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
                true,
            ),
        ]);
        let schema = collection_schema(&input).expect("ok");
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        let null = Schema::new(vec![Field::new("x", DataType::Null, true)]);
        assert!(collection_schema(&null).is_err());
    }
}
