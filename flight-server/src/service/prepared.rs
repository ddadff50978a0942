//! Prepared statements: the SQL, its result and parameter schemas, and the parameters bound to
//! it.
//!
//! Invariants:
//! - Preparing never runs anything: queries and writes are planned to learn their schemas,
//!   commands (DDL, `COPY`) are only parsed, and all of them run when executed.
//! - A query is planned once per parameter types, by its first execution, on the caller's
//!   session (or a fresh one); later executions bind one parameter set (one row of the bound
//!   batches) and the newest version of each collection into that plan ([`PlanSlot`]), so a
//!   prepared statement always sees the collections as they are when it runs. Commands and
//!   writes are planned afresh by every execution.
//! - Only the caller that prepared a statement can bind, execute or close it; to anyone else its
//!   handle does not exist. Statements idle for [`IDLE_LIFETIME`] are closed, and at most
//!   [`MAX_PREPARED`] are open at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow_flight::sql::ActionCreatePreparedStatementResult;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use tonic::Status;

use crate::auth::Caller;
use crate::error::{status_from_datafusion, FlightServerError};
use crate::service::execution::{is_command_sql, parameter_row, wire_schema, Executor, PlanSlot};
use crate::service::sessions::RequestSession;

/// How long an unused prepared statement stays open.
pub const IDLE_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// The most prepared statements open at once.
pub const MAX_PREPARED: usize = 10_000;

/// The most parameter sets (rows) one bind may carry.
pub const MAX_PARAMETER_SETS: usize = 100_000;

/// The most memory the bound parameters of one statement may hold.
pub const MAX_PARAMETER_BYTES: usize = 256 * 1024 * 1024;

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    owner: Option<String>,
    /// The statement.
    pub sql: String,
    /// The schema of its result (empty for commands, whose result is known only when run).
    pub dataset_schema: SchemaRef,
    /// One field per placeholder, in order (`$1`, `$2`, ...); type `Null` where the statement
    /// does not fix it.
    pub parameter_schema: SchemaRef,
    /// The bound parameter sets, if any.
    pub parameters: Option<Vec<RecordBatch>>,
    /// The plan its executions reuse.
    pub plan: Arc<PlanSlot>,
    last_used: Instant,
}

impl Prepared {
    /// The parameter sets to run with: `None` to run once without parameters.
    pub fn parameter_sets(&self) -> Result<Option<Vec<Vec<ScalarValue>>>, Status> {
        let Some(batches) = &self.parameters else {
            return Ok(None);
        };
        let mut sets = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                sets.push(parameter_row(batch, row).map_err(|e| status_from_datafusion(&e))?);
            }
        }
        Ok(Some(sets))
    }
}

/// The schema of the results of `sql` and that of its parameters (both empty for a command),
/// planned on `session`.
async fn announced_schemas(
    executor: &Executor,
    sql: &str,
    session: &RequestSession,
) -> Result<(Schema, Schema), Status> {
    if is_command_sql(sql).map_err(|e| status_from_datafusion(&e))? {
        return Ok((Schema::empty(), Schema::empty()));
    }
    let df = executor
        .session_of(session)
        .sql(sql)
        .await
        .map_err(|e| status_from_datafusion(&e))?;
    let parameters = df
        .logical_plan()
        .get_parameter_fields()
        .map_err(|e| status_from_datafusion(&e))?;
    Ok((
        wire_schema(df.schema().as_arrow()),
        parameter_schema(parameters),
    ))
}

/// The open prepared statements.
#[derive(Debug, Default)]
pub struct PreparedStatements {
    entries: Mutex<HashMap<String, Prepared>>,
}

impl PreparedStatements {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Prepared>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prepares `sql` for the caller of `session`, planned on that session.
    pub async fn create(
        &self,
        executor: &Executor,
        sql: String,
        session: &RequestSession,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = session.caller();
        // Parsed and planned on the query threads, as every statement is, so that a statement
        // slow to plan holds up no other client's requests.
        let (dataset_schema, parameter_schema) = {
            let (planner, sql, session) = (executor.clone(), sql.clone(), session.clone());
            executor
                .on_query_threads(async move { announced_schemas(&planner, &sql, &session).await })
                .await?
        };
        let result = ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::new(),
            dataset_schema: schema_bytes(&dataset_schema)?,
            parameter_schema: if parameter_schema.fields().is_empty() {
                Bytes::new()
            } else {
                schema_bytes(&parameter_schema)?
            },
        };
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let mut entries = self.lock();
        let now = Instant::now();
        entries.retain(|_, p| now.duration_since(p.last_used) < IDLE_LIFETIME);
        if entries.len() >= MAX_PREPARED {
            return Err(Status::resource_exhausted(format!(
                "too many open prepared statements ({MAX_PREPARED}); close some first"
            )));
        }
        entries.insert(
            handle.clone(),
            Prepared {
                owner: caller.user.clone(),
                sql,
                dataset_schema: Arc::new(dataset_schema),
                parameter_schema: Arc::new(parameter_schema),
                parameters: None,
                plan: Arc::default(),
                last_used: now,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            ..result
        })
    }

    /// The statement `handle` names, if `caller` owns it.
    pub fn get(&self, handle: &[u8], caller: &Caller) -> Result<Prepared, Status> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(&handle_text(handle))
            .filter(|p| caller.owns(&p.owner))
            .ok_or_else(|| unknown(handle))?;
        entry.last_used = Instant::now();
        Ok(entry.clone())
    }

    /// Binds parameter sets (the rows of `batches`) to a statement, replacing earlier ones.
    pub fn bind(
        &self,
        handle: &[u8],
        caller: &Caller,
        batches: Vec<RecordBatch>,
    ) -> Result<(), Status> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(&handle_text(handle))
            .filter(|p| caller.owns(&p.owner))
            .ok_or_else(|| unknown(handle))?;
        let expected = entry.parameter_schema.fields().len();
        if let Some(batch) = batches.first() {
            if batch.num_columns() != expected {
                return Err(FlightServerError::InvalidRequest(format!(
                    "the statement has {expected} parameter(s) but {} value(s) were bound",
                    batch.num_columns()
                ))
                .into());
            }
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        if rows > MAX_PARAMETER_SETS || bytes > MAX_PARAMETER_BYTES {
            return Err(FlightServerError::InvalidRequest(format!(
                "{rows} parameter sets ({bytes} bytes) bound at once; the limits are \
                 {MAX_PARAMETER_SETS} sets and {MAX_PARAMETER_BYTES} bytes"
            ))
            .into());
        }
        entry.parameters = Some(batches);
        entry.last_used = Instant::now();
        Ok(())
    }

    /// Closes a statement.
    pub fn close(&self, handle: &[u8], caller: &Caller) -> Result<(), Status> {
        let mut entries = self.lock();
        let key = handle_text(handle);
        match entries.get(&key) {
            Some(p) if caller.owns(&p.owner) => {
                entries.remove(&key);
                Ok(())
            }
            _ => Err(unknown(handle)),
        }
    }
}

fn handle_text(handle: &[u8]) -> String {
    String::from_utf8_lossy(handle).into_owned()
}

fn unknown(handle: &[u8]) -> Status {
    FlightServerError::UnknownPreparedStatement {
        handle: handle_text(handle),
    }
    .into()
}

/// The parameter schema: `$1, $2, ...` in numeric order, then named placeholders by name.
fn parameter_schema(
    parameters: HashMap<String, Option<datafusion::arrow::datatypes::FieldRef>>,
) -> Schema {
    let mut named: Vec<_> = parameters.into_iter().collect();
    named.sort_by_key(|(name, _)| {
        let number = name.strip_prefix('$').and_then(|n| n.parse::<u64>().ok());
        (number.is_none(), number, name.clone())
    });
    Schema::new(
        named
            .into_iter()
            .map(|(name, field)| {
                let data_type = field
                    .map(|f| f.data_type().clone())
                    .unwrap_or(DataType::Null);
                Field::new(name, data_type, true)
            })
            .collect::<Vec<_>>(),
    )
}

/// A schema as the IPC message Flight SQL puts in `dataset_schema` / `parameter_schema`.
pub fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_ordered_by_number() {
        let mut parameters = HashMap::new();
        for name in ["$10", "$2", "$1", "$name"] {
            parameters.insert(name.to_string(), None);
        }
        parameters.insert(
            "$2".to_string(),
            Some(Arc::new(Field::new("", DataType::Int64, true))),
        );
        let schema = parameter_schema(parameters);
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["$1", "$2", "$10", "$name"]);
        assert_eq!(schema.field(1).data_type(), &DataType::Int64);
        assert_eq!(schema.field(0).data_type(), &DataType::Null);
    }
}
