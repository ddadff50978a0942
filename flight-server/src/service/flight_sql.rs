//! Quiver's Flight SQL service: arrow-flight's [`FlightSqlService`] over the catalog.
//!
//! Each handler authenticates the caller first (and finds the session its cookie names), then
//! delegates: statements to
//! [`Executor`](crate::service::execution::Executor) and the ticket registry, prepared statements to
//! [`PreparedStatements`], bulk ingest to [`crate::service::ingest`], metadata to [`Metadata`], custom
//! actions to the [`ActionRegistry`], session actions to [`crate::service::sessions`].
//!
//! Invariants:
//! - `GetFlightInfo` plans (commands and writes run there, exactly once); `DoGet` streams. A
//!   statement's ticket holds only a random handle, redeemable once by the caller who planned it.
//! - Results stream batch by batch from the running plan to the client; nothing buffers a whole
//!   result. Every stream announces its schema first, even when it has no rows.
//! - Transactions and Substrait are not offered (SqlInfo says so); requests for them get a clear
//!   `InvalidArgument` / `Unimplemented`.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{DoPutError, FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use quiver_catalog::Catalog;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::actions::{ActionContext, ActionRegistry};
use crate::auth::{Authenticator, Caller};
use crate::config::{QueryLimits, SessionLimits};
use crate::error::FlightServerError;
use crate::service::execution::{
    affected_rows, wire_schema, BatchStream, Executor, PlanSlot, Planned,
};
use crate::service::ingest::ingest;
use crate::service::input::{decode, decode_optional};
use crate::service::metadata::{Metadata, MetadataCommand};
use crate::service::prepared::PreparedStatements;
use crate::service::queries::{Pending, QueryRegistry, Work};
use crate::service::sessions::options::{
    self, CloseSessionRequest, GetSessionOptionsRequest, SetSessionOptionsRequest, CLOSE_SESSION,
    GET_SESSION_OPTIONS, SET_SESSION_OPTIONS,
};
use crate::service::sessions::RequestSession;

/// The type of `DoGet` responses.
type DoGetStream = <QuiverFlightService as FlightService>::DoGetStream;
/// The type of `DoAction` responses.
type DoActionStream = <QuiverFlightService as FlightService>::DoActionStream;

/// The Flight-level cancel action (its body and result are plain protobuf, not `Any`).
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// The Flight SQL service.
pub struct QuiverFlightService {
    executor: Executor,
    auth: Arc<Authenticator>,
    queries: Arc<QueryRegistry>,
    prepared: PreparedStatements,
    metadata: Metadata,
    actions: ActionRegistry,
}

impl std::fmt::Debug for QuiverFlightService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuiverFlightService")
            .field("root", &self.executor.catalog().root().display())
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

impl QuiverFlightService {
    /// A service over `catalog`, running jobs with `jobs`.
    pub fn new(
        catalog: Arc<Catalog>,
        limits: QueryLimits,
        sessions: SessionLimits,
        jobs: quiver_planner::jobs::SchedulerConfig,
        auth: Arc<Authenticator>,
        actions: ActionRegistry,
    ) -> Result<Self, FlightError> {
        Ok(Self {
            executor: Executor::new(catalog.clone(), limits.clone(), sessions, jobs)
                .map_err(|e| FlightError::ExternalError(Box::new(e)))?,
            auth,
            queries: Arc::new(QueryRegistry::default()),
            prepared: PreparedStatements::default(),
            metadata: Metadata::new(catalog, &limits)?,
            actions,
        })
    }

    /// The scheduler running the server's jobs.
    pub fn scheduler(&self) -> Arc<quiver_planner::jobs::JobScheduler> {
        self.executor.scheduler().clone()
    }

    /// The registry of tickets (to cancel everything at shutdown).
    pub fn queries(&self) -> Arc<QueryRegistry> {
        self.queries.clone()
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.auth.caller(request)
    }

    /// The authenticated caller of `request` and the session its cookie names.
    fn session<T>(&self, request: &Request<T>) -> Result<RequestSession, Status> {
        let caller = self.caller(request)?;
        self.executor.sessions().of_request(request, caller)
    }

    /// Runs a session action; `None` if `action` is not one.
    async fn session_action(
        &self,
        mut session: RequestSession,
        action: &Action,
    ) -> Option<Result<Vec<u8>, Status>> {
        let result = match action.r#type.as_str() {
            SET_SESSION_OPTIONS => {
                let set = async {
                    let request: SetSessionOptionsRequest =
                        options::decode_body(&action.body, "SetSessionOptionsRequest")?;
                    let sql = self.executor.open_session(&mut session)?;
                    Ok(options::set_options(&sql, request).await.encode_to_vec())
                };
                set.await
            }
            GET_SESSION_OPTIONS => options::decode_body::<GetSessionOptionsRequest>(
                &action.body,
                "GetSessionOptionsRequest",
            )
            .map(|_| options::get_options(&self.executor.session_of(&session)).encode_to_vec()),
            CLOSE_SESSION => {
                options::decode_body::<CloseSessionRequest>(&action.body, "CloseSessionRequest")
                    .and_then(|_| self.executor.sessions().close(&session))
                    .map(|()| options::closed().encode_to_vec())
            }
            _ => return None,
        };
        Some(result)
    }

    /// Registers planned statements and describes them in a `FlightInfo` whose one endpoint's
    /// ticket redeems them.
    fn flight_info(
        &self,
        caller: &Caller,
        pending: Pending,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = wire_schema(&pending.schema);
        let handle = self.queries.register(caller, pending);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// A `FlightInfo` for a metadata command: the ticket is the command itself.
    fn metadata_info(
        &self,
        command: MetadataCommand,
        any: Any,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = self.metadata.schema(&command);
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(any.encode_to_vec())))
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    /// The `DoGet` for a metadata command: one batch.
    async fn metadata_get(
        &self,
        command: MetadataCommand,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let batch = self.metadata.batch(command).await?;
        let schema = batch.schema();
        Ok(Response::new(encode(
            schema,
            futures::stream::once(async { Ok(batch) }).boxed(),
        )))
    }

    /// Plans a prepared statement on `session` once per parameter set (once without
    /// parameters), reusing the plan its earlier executions left in `reuse`.
    async fn plan_all(
        &self,
        sql: &str,
        parameter_sets: Option<Vec<Vec<datafusion::common::ScalarValue>>>,
        fallback_schema: SchemaRef,
        session: RequestSession,
        reuse: Arc<PlanSlot>,
    ) -> Result<Pending, Status> {
        let Some(sets) = parameter_sets else {
            let planned = self
                .executor
                .plan_detached(sql.to_string(), None, session, Some(reuse))
                .await?;
            return Ok(pending(planned));
        };
        // Many rows of parameters for one INSERT: one write, all rows or none.
        if sets.len() > 1 {
            if let Some(planned) = self
                .executor
                .insert_rows_detached(sql.to_string(), sets.clone(), session.clone())
                .await?
            {
                return Ok(pending(planned));
            }
        }
        let mut schema = None;
        let mut frames = Vec::new();
        let mut done = Vec::new();
        for set in sets {
            let planned = self
                .executor
                .plan_detached(
                    sql.to_string(),
                    Some(set),
                    session.clone(),
                    Some(reuse.clone()),
                )
                .await?;
            schema.get_or_insert_with(|| planned.schema());
            match planned {
                Planned::Query(frame) => frames.push(*frame),
                Planned::Done { batches, .. } => done.extend(batches),
            }
        }
        let schema = schema.unwrap_or(fallback_schema);
        let work = if frames.is_empty() {
            Work::Done(done)
        } else {
            Work::Query(frames)
        };
        Ok(Pending { schema, work })
    }

    /// Runs a Flight-level `CancelFlightInfo` or legacy `CancelQuery` on a serialized FlightInfo.
    fn cancel(&self, info: Option<FlightInfo>, caller: &Caller) -> CancelStatus {
        let Some(info) = info else {
            return CancelStatus::NotCancellable;
        };
        let mut status = CancelStatus::NotCancellable;
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let handle = Any::decode(ticket.ticket)
                .ok()
                .and_then(|any| any.unpack::<TicketStatementQuery>().ok().flatten());
            if let Some(t) = handle {
                let handle = String::from_utf8_lossy(&t.statement_handle).into_owned();
                match self.queries.cancel(&handle, caller) {
                    CancelStatus::NotCancellable => {}
                    other => status = other,
                }
            }
        }
        status
    }
}

/// A planned statement as pending work.
fn pending(planned: Planned) -> Pending {
    let schema = planned.schema();
    let work = match planned {
        Planned::Query(frame) => Work::Query(vec![*frame]),
        Planned::Done { batches, .. } => Work::Done(batches),
    };
    Pending { schema, work }
}

/// Encodes result batches as Flight data; the schema goes first even when there are no rows.
/// `batch` under the schema its `FlightInfo` announced. The announced schema is the logical
/// plan's; the physical plan may know more (a folded constant is not nullable) and names the same
/// columns and types, and clients check that every batch has the announced schema.
fn conform(announced: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, Status> {
    if batch.schema_ref() == announced {
        return Ok(batch);
    }
    RecordBatch::try_new(announced.clone(), batch.columns().to_vec()).map_err(|e| {
        Status::internal(format!(
            "the result does not have the schema its FlightInfo announced: {e}"
        ))
    })
}

fn encode(schema: SchemaRef, batches: BatchStream) -> DoGetStream {
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches.map_err(FlightError::from))
        .map_err(Status::from);
    Box::pin(flight)
}

fn one_result(body: Vec<u8>) -> DoActionStream {
    Box::pin(futures::stream::iter(vec![Ok(arrow_flight::Result::new(
        body,
    ))]))
}

fn no_transactions(transaction_id: &Option<bytes::Bytes>) -> Result<(), Status> {
    match transaction_id {
        Some(_) => Err(FlightServerError::InvalidRequest(
            "transactions are not supported: every statement commits on its own".into(),
        )
        .into()),
        None => Ok(()),
    }
}

/// The rows written by one statement per parameter set, summed.
fn total_affected(done: &Pending) -> i64 {
    match &done.work {
        Work::Done(batches) => affected_rows(batches),
        Work::Query(_) => -1,
    }
}

type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FlightSqlService for QuiverFlightService {
    type FlightService = QuiverFlightService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let token = self.auth.handshake(request.metadata())?;
        let out = futures::stream::iter(vec![Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        })]);
        let mut response: Response<HandshakeStream> = Response::new(Box::pin(out));
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| Status::internal(e.to_string()))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request)?;
        no_transactions(&query.transaction_id)?;
        let caller = session.caller().clone();
        let planned = self
            .executor
            .plan_detached(query.query, None, session, None)
            .await?;
        self.flight_info(&caller, pending(planned), request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request)?;
        let caller = session.caller().clone();
        let prepared = self
            .prepared
            .get(&query.prepared_statement_handle, &caller)?;
        let pending = self
            .plan_all(
                &prepared.sql,
                prepared.parameter_sets()?,
                prepared.dataset_schema.clone(),
                session,
                prepared.plan.clone(),
            )
            .await?;
        self.flight_info(&caller, pending, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let handle = String::from_utf8_lossy(&ticket.statement_handle).into_owned();
        let (pending, running) = self.queries.start(&handle, &caller)?;
        let schema = pending.schema;
        let batches = match pending.work {
            Work::Done(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
            Work::Query(frames) => {
                self.executor
                    .stream(frames, self.executor.deadline(), running.cancel.clone())
                    .await?
            }
        };
        // The registry entry lives as long as the stream: it ends, fails or is dropped together.
        let announced = schema.clone();
        let batches = batches
            .map(move |batch| {
                let _running = &running;
                batch.and_then(|batch| conform(&announced, batch))
            })
            .boxed();
        Ok(Response::new(encode(schema, batches)))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::Catalogs(query), any, request)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::Schemas(query), any, request)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::Tables(query), any, request)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::TableTypes(query), any, request)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::SqlInfo(query), any, request)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::PrimaryKeys(query), any, request)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::ExportedKeys(query), any, request)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::ImportedKeys(query), any, request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::CrossReference(query), any, request)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let any = query.as_any();
        self.metadata_info(MetadataCommand::XdbcTypeInfo(query), any, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::Catalogs(query), request)
            .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::Schemas(query), request)
            .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::Tables(query), request)
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::TableTypes(query), request)
            .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::SqlInfo(query), request)
            .await
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::PrimaryKeys(query), request)
            .await
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::ExportedKeys(query), request)
            .await
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::ImportedKeys(query), request)
            .await
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::CrossReference(query), request)
            .await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_get(MetadataCommand::XdbcTypeInfo(query), request)
            .await
    }

    async fn do_put_error_callback(
        &self,
        request: Request<PeekableFlightDataStream>,
        error: DoPutError,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        self.caller(&request)?;
        let message = match error {
            DoPutError::MissingCommand => "DoPut needs at least one message",
            DoPutError::MissingFlightDescriptor => {
                "the first DoPut message must carry a flight descriptor with a Flight SQL command"
            }
        };
        Err(FlightServerError::InvalidRequest(message.to_string()).into())
    }

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(&request)?;
        no_transactions(&ticket.transaction_id)?;
        let planned = self
            .executor
            .plan_detached(ticket.query, None, session, None)
            .await?;
        Ok(total_affected(&pending(planned)))
    }

    async fn do_put_statement_ingest(
        &self,
        ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(&request)?;
        let database = session.session().map_or_else(
            || quiver_catalog::DEFAULT_DATABASE.to_string(),
            |s| s.current_database(),
        );
        ingest(&self.executor, ticket, request.into_inner(), database).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        // Check the handle before reading the client's data.
        self.prepared
            .get(&query.prepared_statement_handle, &caller)?;
        let (_, batches) = decode(request.into_inner()).await?;
        let batches: Vec<RecordBatch> = batches.map_err(Status::from).try_collect().await?;
        self.prepared
            .bind(&query.prepared_statement_handle, &caller, batches)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(&request)?;
        let caller = session.caller().clone();
        let mut prepared = self
            .prepared
            .get(&query.prepared_statement_handle, &caller)?;
        // Parameters may come in this stream (ADBC) or from an earlier bind (arrow-rs client).
        if let Some((_, batches)) = decode_optional(request.into_inner()).await? {
            let batches: Vec<RecordBatch> = batches.map_err(Status::from).try_collect().await?;
            self.prepared
                .bind(&query.prepared_statement_handle, &caller, batches)?;
            prepared = self
                .prepared
                .get(&query.prepared_statement_handle, &caller)?;
        }
        let done = self
            .plan_all(
                &prepared.sql,
                prepared.parameter_sets()?,
                prepared.dataset_schema.clone(),
                session,
                prepared.plan.clone(),
            )
            .await?;
        Ok(total_affected(&done))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(&request)?;
        no_transactions(&query.transaction_id)?;
        self.prepared
            .create(&self.executor, query.query, &session)
            .await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request)?;
        self.prepared
            .close(&query.prepared_statement_handle, &caller)
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = self.caller(&request)?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| FlightServerError::InvalidRequest(format!("malformed FlightInfo: {e}")))?;
        // The legacy result codes equal CancelStatus's numbers.
        Ok(ActionCancelQueryResult {
            result: self.cancel(Some(info), &caller) as i32,
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<DoActionStream>, Status> {
        let session = self.session(&request)?;
        let caller = session.caller().clone();
        let action = request.into_inner();
        if let Some(result) = self.session_action(session, &action).await {
            return Ok(Response::new(one_result(result?)));
        }
        if action.r#type == CANCEL_FLIGHT_INFO {
            let cancel = CancelFlightInfoRequest::decode(action.body).map_err(|e| {
                FlightServerError::InvalidRequest(format!("malformed CancelFlightInfoRequest: {e}"))
            })?;
            let result = CancelFlightInfoResult::new(self.cancel(cancel.info, &caller));
            return Ok(Response::new(one_result(result.encode_to_vec())));
        }
        let context = ActionContext {
            executor: self.executor.clone(),
            caller,
        };
        let body = self
            .actions
            .call(&action.r#type, &context, &action.body)
            .await?;
        Ok(Response::new(one_result(body)))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let mut actions = vec![Ok(ActionType {
            r#type: CANCEL_FLIGHT_INFO.to_string(),
            description: "Cancels a statement. Request: CancelFlightInfoRequest (protobuf). \
                Response: CancelFlightInfoResult (protobuf)."
                .to_string(),
        })];
        for (name, what) in [
            (
                SET_SESSION_OPTIONS,
                "Sets session options (the settings SET takes, and 'schema'), opening a session \
                 if the request has none; its cookie comes back in Set-Cookie. Request: \
                 SetSessionOptionsRequest (protobuf). Response: SetSessionOptionsResult.",
            ),
            (
                GET_SESSION_OPTIONS,
                "Lists the session's options. Request: GetSessionOptionsRequest (protobuf). \
                 Response: GetSessionOptionsResult.",
            ),
            (
                CLOSE_SESSION,
                "Closes the session. Request: CloseSessionRequest (protobuf). Response: \
                 CloseSessionResult.",
            ),
        ] {
            actions.push(Ok(ActionType {
                r#type: name.to_string(),
                description: what.to_string(),
            }));
        }
        actions.extend(self.actions.action_types().into_iter().map(Ok));
        Some(actions)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
