//! Running SQL for the service: each statement on its client's session (or a fresh one), under
//! the server's per-query limits.
//!
//! Invariants:
//! - A statement runs on the session its request names ([`RequestSession`]), or, without one, on
//!   a fresh [`QuiverSession`] over the shared catalog, so no client sees another's settings;
//!   queries without a session share one session with the default settings, which a query
//!   never changes (saving the build of a session per statement). A
//!   `SET` without a session opens one, so that a client that keeps its session cookie keeps
//!   the setting; a client that does not keep it sees the setting dropped, as before.
//! - Planning runs on its own task ([`Executor::plan_detached`]): a command (DDL, `COPY`) or a
//!   write that has started finishes even if the client disconnects, so a disconnect never
//!   leaves a half-made collection.
//! - Statements are planned and executed on the query threads ([`QueryRuntime`]), never on the
//!   runtime serving gRPC, so a heavy query does not hold up other clients' round trips.
//! - Writes (`INSERT`, `UPDATE`, `DELETE`, `COPY ... TO`) run to completion when planned, not when
//!   their result is fetched: the write happens exactly once whether or not the client reads the
//!   count. A failed or timed-out write commits nothing (one Lance transaction per statement).
//! - A prepared statement's query is planned once per parameter types ([`PlanSlot`]): later
//!   executions bind their values and the newest version of each collection into the optimised
//!   plan ([`ReusablePlan`]) without parsing, analysing or optimising again, and plan afresh
//!   when a collection was dropped, re-created or changed its columns. Where the plan is an
//!   index search for the query vector bound, its physical plan is kept as well
//!   ([`quiver_planner::plan_cache::physical`]) and later executions skip physical planning.
//! - An ad-hoc query whose only literals that change are its query vectors (`[0.1, ...]`)
//!   reuses the plan of the first query of its shape ([`StatementCache`]), bound the same way;
//!   `EXPLAIN` of such a query says whether a cached plan serves it.
//! - Queries run when their results are streamed, batch by batch (never buffered whole), each
//!   with its own DataFusion memory pool of [`QueryLimits::memory`] bytes and a deadline of
//!   [`QueryLimits::timeout`] checked inside the stream, so a stream handed to the client cannot
//!   escape it.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{Array, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use quiver_catalog::Catalog;
use quiver_operators::functions::to_vector;
use quiver_planner::jobs::{JobScheduler, SchedulerConfig};
use quiver_planner::plan_cache::physical::TemplateSeed;
use quiver_planner::plan_cache::statement_cache::{lift_vectors, names_a_placeholder};
use quiver_planner::plan_cache::{BoundPlan, CachedShape, ReusablePlan, StatementCache};
use quiver_planner::statements::{parse_statements, QuiverStatement};
use quiver_planner::QuiverSession;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::config::{QueryLimits, SessionLimits};
use crate::error::{status_from_datafusion, FlightServerError};
use crate::service::insert_rows;
use crate::service::query_runtime::QueryRuntime;
use crate::service::sessions::{RequestSession, Sessions};

/// How many memory consumers a memory-limit error names.
const REPORTED_CONSUMERS: NonZeroUsize = match NonZeroUsize::new(3) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Result batches a query's threads may run ahead of the client that reads them.
const RESULT_BUFFER: usize = 2;

/// A stream of result batches as the service sends them.
pub type BatchStream = BoxStream<'static, Result<RecordBatch, Status>>;

/// A query ready to run.
pub struct Frame {
    df: DataFrame,
    plan: FramePlan,
}

/// How far a [`Frame`]'s query is planned.
enum FramePlan {
    /// Parsed and analysed: it is optimised and planned physically when it runs.
    Fresh,
    /// Optimised (a reused plan): it goes straight to physical planning, after which the seed,
    /// if any, keeps the physical plan for the next executions.
    Optimized(Option<TemplateSeed>),
    /// Planned physically already (a kept physical plan with this execution's query vector).
    Physical(Arc<dyn ExecutionPlan>),
}

impl Frame {
    /// A query planned as usual: it is optimised when it runs.
    pub fn new(df: DataFrame) -> Self {
        Self {
            df,
            plan: FramePlan::Fresh,
        }
    }

    /// One execution of a reused plan, on `state`.
    fn bound(state: SessionState, bound: BoundPlan) -> Self {
        match bound {
            BoundPlan::Logical(plan, seed) => Self {
                df: DataFrame::new(state, *plan),
                plan: FramePlan::Optimized(seed),
            },
            BoundPlan::Physical(plan, schema) => {
                // The result's schema is all the logical side has to say.
                let empty = LogicalPlan::EmptyRelation(EmptyRelation {
                    produce_one_row: false,
                    schema,
                });
                Self {
                    df: DataFrame::new(state, empty),
                    plan: FramePlan::Physical(plan),
                }
            }
        }
    }

    /// The schema of its result.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.df.schema().as_arrow().clone())
    }
}

/// Where a prepared statement keeps the plan its executions reuse.
#[derive(Debug, Default)]
pub struct PlanSlot {
    plan: Mutex<Option<Arc<ReusablePlan>>>,
}

impl PlanSlot {
    fn get(&self) -> Option<Arc<ReusablePlan>> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, plan: Option<Arc<ReusablePlan>>) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = plan;
    }
}

/// How many statements the server planned, and how many executions reused a plan.
#[derive(Debug, Default)]
pub struct PlanCounts {
    made: AtomicU64,
    reused: AtomicU64,
    physical: AtomicU64,
}

impl PlanCounts {
    /// Statements planned (parsed, analysed and optimised).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Executions of prepared statements and ad-hoc queries that reused a plan.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Of those, the executions that ran a physical plan kept from an earlier one (planned no
    /// further than binding their query vector).
    pub fn physical(&self) -> u64 {
        self.physical.load(Ordering::Relaxed)
    }
}

/// What planning one statement produced.
pub enum Planned {
    /// A query (or a command's already computed result): runs when streamed.
    Query(Box<Frame>),
    /// A write that has run; its result (the affected row count).
    Done {
        /// The result's schema.
        schema: SchemaRef,
        /// The result.
        batches: Vec<RecordBatch>,
    },
}

impl Planned {
    /// The schema of the statement's result.
    pub fn schema(&self) -> SchemaRef {
        match self {
            Planned::Query(frame) => frame.schema(),
            Planned::Done { schema, .. } => schema.clone(),
        }
    }
}

/// Plans and runs statements over one catalog with the server's limits.
#[derive(Debug, Clone)]
pub struct Executor {
    catalog: Arc<Catalog>,
    limits: QueryLimits,
    scheduler: Arc<JobScheduler>,
    /// Where statements are planned and executed.
    runtime: Arc<QueryRuntime>,
    /// The clients' open sessions.
    sessions: Arc<Sessions>,
    /// Plans made and reused.
    plans: Arc<PlanCounts>,
    /// The plans of ad-hoc query shapes.
    statements: Arc<StatementCache>,
    /// The session queries of requests without a session of their own are planned on: a query
    /// changes nothing in its session, so they share one rather than each building its own.
    queries: QuiverSession,
}

impl Executor {
    /// An executor over `catalog`, with its own job scheduler (of `jobs`), query threads and
    /// sessions.
    pub fn new(
        catalog: Arc<Catalog>,
        limits: QueryLimits,
        sessions: SessionLimits,
        jobs: SchedulerConfig,
    ) -> std::io::Result<Self> {
        let scheduler = JobScheduler::new(catalog.clone(), jobs);
        let queries = new_session(&catalog, &limits, &scheduler);
        Ok(Self {
            queries,
            catalog,
            limits,
            scheduler,
            runtime: Arc::new(QueryRuntime::new()?),
            sessions: Arc::new(Sessions::new(sessions)),
            plans: Arc::default(),
            statements: Arc::default(),
        })
    }

    /// How many statements were planned, and how many executions reused a plan.
    pub fn plans(&self) -> &PlanCounts {
        &self.plans
    }

    /// The clients' open sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The session a statement of `request` runs on: the request's own, or a fresh one.
    pub fn session_of(&self, request: &RequestSession) -> QuiverSession {
        request.session().cloned().unwrap_or_else(|| self.session())
    }

    /// The session a query (`SELECT`, or `EXPLAIN` of one) of `request` is planned on: the
    /// request's own, or the one shared by requests without a session.
    fn query_session_of(&self, request: &RequestSession) -> QuiverSession {
        request
            .session()
            .cloned()
            .unwrap_or_else(|| self.queries.clone())
    }

    /// The request's session, opened now (its cookie sent with the response) if it has none.
    pub fn open_session(&self, request: &mut RequestSession) -> Result<QuiverSession, Status> {
        self.sessions.open(request, || self.session())
    }

    /// The scheduler running the server's jobs.
    pub fn scheduler(&self) -> &Arc<JobScheduler> {
        &self.scheduler
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// A fresh session over the catalog, running jobs on the server's scheduler.
    pub fn session(&self) -> QuiverSession {
        new_session(&self.catalog, &self.limits, &self.scheduler)
    }

    /// [`Self::plan`] on its own task, which finishes even if the caller is dropped.
    pub async fn plan_detached(
        &self,
        sql: String,
        params: Option<Vec<ScalarValue>>,
        session: RequestSession,
        reuse: Option<Arc<PlanSlot>>,
    ) -> Result<Planned, Status> {
        let executor = self.clone();
        self.on_query_threads(async move {
            executor.plan(&sql, params, session, reuse.as_deref()).await
        })
        .await
    }

    /// Runs `work` on the query threads, apart from the threads serving gRPC, to its end even
    /// if the caller is dropped.
    pub async fn on_query_threads<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, Status>> + Send + 'static,
    ) -> Result<T, Status> {
        self.runtime
            .spawn(work)
            .await
            .map_err(|e| Status::from(FlightServerError::Internal(e.to_string())))?
    }

    /// Plans one statement on `session` with `params` bound to its placeholders (`$1`, `$2`,
    /// ...). Commands run now; writes run now under the limits; queries come back lazy. With
    /// `reuse` (a prepared statement's), a query reuses the plan an earlier execution left
    /// there, or leaves its own.
    pub async fn plan(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
        mut session: RequestSession,
        reuse: Option<&PlanSlot>,
    ) -> Result<Planned, Status> {
        let sql_error = |e: DataFusionError| status_from_datafusion(&e);
        if let Some(slot) = reuse {
            if let Some(planned) = self.reuse(slot, params.as_deref(), &session).await? {
                self.plans.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(planned);
            }
        }
        let statement = single_statement(sql).map_err(sql_error)?;
        if !self.limits.allow_server_files && touches_server_files(&statement) {
            return Err(FlightServerError::ServerFilesRefused.into());
        }
        if params.is_some() && is_command(&statement) {
            return Err(FlightServerError::InvalidRequest(
                "parameters can only be bound to queries and INSERT/UPDATE/DELETE".into(),
            )
            .into());
        }
        let session = if sets_session(&statement) {
            self.open_session(&mut session)?
        } else if is_query(&statement) {
            self.query_session_of(&session)
        } else {
            self.session_of(&session)
        };
        if reuse.is_none() && params.is_none() {
            if let Some(planned) = self.plan_shape(&session, &statement).await? {
                return Ok(planned);
            }
        }
        let cache_note = self.explain_note(&session, &statement).await;
        self.plans.made.fetch_add(1, Ordering::Relaxed);
        let df = session.statement(statement).await.map_err(sql_error)?;
        let df = match cache_note {
            Some(note) => with_explain_row(&session, df, note)
                .await
                .map_err(sql_error)?,
            None => df,
        };
        // A prepared query runs as a reusable plan, even without parameters.
        let params = match (params, reuse) {
            (None, Some(_)) if !writes(df.logical_plan()) => Some(Vec::new()),
            (params, _) => params,
        };
        let df = match params {
            Some(values) => {
                let (state, plan) = df.into_parts();
                let values = typed_parameters(&plan, values)?;
                if let Some(slot) = reuse {
                    let types: Vec<DataType> = values.iter().map(ScalarValue::data_type).collect();
                    let reusable = ReusablePlan::new(&session, plan.clone(), &types)
                        .map_err(sql_error)?
                        .map(Arc::new);
                    slot.set(reusable.clone());
                    if let Some(reusable) = reusable {
                        let bound = reusable.with_values(values).map_err(sql_error)?;
                        let frame = Frame::bound(state, bound);
                        return Ok(Planned::Query(Box::new(frame)));
                    }
                }
                DataFrame::new(state, plan.with_param_values(values).map_err(sql_error)?)
            }
            None => df,
        };
        if writes(df.logical_plan()) {
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = self.run_to_completion(df, self.deadline()).await?;
            return Ok(Planned::Done { schema, batches });
        }
        Ok(Planned::Query(Box::new(Frame::new(df))))
    }

    /// An ad-hoc query through the statement cache: bound into the cached plan of its shape, or
    /// planned as its shape and cached. `None` when the statement is not such a query, its shape
    /// is not reusable, or its shape does not plan (planning the statement itself then says
    /// why).
    async fn plan_shape(
        &self,
        session: &QuiverSession,
        statement: &QuiverStatement,
    ) -> Result<Option<Planned>, Status> {
        let sql_error = |e: DataFusionError| status_from_datafusion(&e);
        let Some(lifted) = lift_vectors(statement) else {
            return Ok(None);
        };
        let key = StatementCache::key(session, &lifted.shape);
        match self.statements.get(&key).await {
            Some(CachedShape::NotReusable) => return Ok(None),
            Some(CachedShape::Plan(plan)) => {
                match plan
                    .bind(session, lifted.values.clone())
                    .await
                    .map_err(sql_error)?
                {
                    Some(bound) => {
                        self.plans.reused.fetch_add(1, Ordering::Relaxed);
                        let frame = Frame::bound(session.context().state(), bound);
                        return Ok(Some(Planned::Query(Box::new(frame))));
                    }
                    None => self.statements.remove(&key).await,
                }
            }
            None => {}
        }
        self.plans.made.fetch_add(1, Ordering::Relaxed);
        let Ok(df) = session.statement(lifted.statement).await else {
            return Ok(None);
        };
        let plan = df.into_parts().1;
        let types: Vec<DataType> = lifted.values.iter().map(ScalarValue::data_type).collect();
        let reusable = if names_a_placeholder(&plan, types.len()) {
            None
        } else {
            ReusablePlan::new(session, plan, &types)
                .map_err(sql_error)?
                .map(Arc::new)
        };
        let Some(reusable) = reusable else {
            self.statements.insert(key, CachedShape::NotReusable).await;
            return Ok(None);
        };
        self.statements
            .insert(key, CachedShape::Plan(reusable.clone()))
            .await;
        let bound = reusable.with_values(lifted.values).map_err(sql_error)?;
        let frame = Frame::bound(session.context().state(), bound);
        Ok(Some(Planned::Query(Box::new(frame))))
    }

    /// For `EXPLAIN` of an ad-hoc query with query vectors: whether the statement cache serves
    /// the query.
    async fn explain_note(
        &self,
        session: &QuiverSession,
        statement: &QuiverStatement,
    ) -> Option<&'static str> {
        let QuiverStatement::DataFusion(inner) = statement else {
            return None;
        };
        let DFStatement::Explain(explain) = inner.as_ref() else {
            return None;
        };
        if explain.analyze {
            return None;
        }
        let query = QuiverStatement::DataFusion(explain.statement.clone());
        let lifted = lift_vectors(&query)?;
        let key = StatementCache::key(session, &lifted.shape);
        Some(match self.statements.get(&key).await {
            Some(CachedShape::Plan(_)) => {
                "hit: the query binds its vectors into a cached plan of its shape"
            }
            Some(CachedShape::NotReusable) => {
                "not cached: a result column is named after a query vector (alias it to cache)"
            }
            None => "miss: the query's next execution plans its shape and caches it",
        })
    }

    /// The plan `slot` holds, bound to `params` and to the collections' newest versions; `None`
    /// when there is none, the values are not of its types, or a collection changed.
    async fn reuse(
        &self,
        slot: &PlanSlot,
        params: Option<&[ScalarValue]>,
        session: &RequestSession,
    ) -> Result<Option<Planned>, Status> {
        let Some(reusable) = slot.get() else {
            return Ok(None);
        };
        let types = reusable.parameter_types();
        let params = params.unwrap_or_default();
        if params.len() != types.len() {
            return Ok(None);
        }
        let values: Option<Vec<ScalarValue>> = params
            .iter()
            .zip(types)
            .enumerate()
            .map(|(i, (value, to))| parameter_as(value.clone(), to, &format!("${}", i + 1)).ok())
            .collect();
        let Some(values) = values else {
            return Ok(None);
        };
        let session = self.query_session_of(session);
        let bound = reusable
            .bind(&session, values)
            .await
            .map_err(|e| status_from_datafusion(&e))?;
        let Some(bound) = bound else {
            slot.set(None);
            return Ok(None);
        };
        let frame = Frame::bound(session.context().state(), bound);
        Ok(Some(Planned::Query(Box::new(frame))))
    }

    /// Plans an INSERT bound to every parameter row of `sets` as one write and runs it on its
    /// own task (which finishes even if the caller is dropped): all rows are written in one
    /// transaction, or none. `None` if the statement is not an INSERT.
    pub async fn insert_rows_detached(
        &self,
        sql: String,
        sets: Vec<Vec<ScalarValue>>,
        session: RequestSession,
    ) -> Result<Option<Planned>, Status> {
        let executor = self.clone();
        self.runtime
            .spawn(async move { executor.insert_rows(&sql, sets, &session).await })
            .await
            .map_err(|e| Status::from(FlightServerError::Internal(e.to_string())))?
    }

    async fn insert_rows(
        &self,
        sql: &str,
        sets: Vec<Vec<ScalarValue>>,
        session: &RequestSession,
    ) -> Result<Option<Planned>, Status> {
        let sql_error = |e: DataFusionError| status_from_datafusion(&e);
        let statement = single_statement(sql).map_err(sql_error)?;
        if is_command(&statement) {
            return Ok(None);
        }
        let df = self
            .session_of(session)
            .statement(statement)
            .await
            .map_err(sql_error)?;
        let (state, plan) = df.into_parts();
        if !insert_rows::is_insert(&plan) {
            return Ok(None);
        }
        let mut bound = Vec::with_capacity(sets.len());
        for set in sets {
            let values = typed_parameters(&plan, set)?;
            bound.push(plan.clone().with_param_values(values).map_err(sql_error)?);
        }
        let Some(insert) = insert_rows::insert_all(&plan, bound).map_err(sql_error)? else {
            return Ok(None);
        };
        let df = DataFrame::new(state, insert);
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = self.run_to_completion(df, self.deadline()).await?;
        Ok(Some(Planned::Done { schema, batches }))
    }

    /// Runs a frame to its end under the memory limit and `deadline`, collecting its (small)
    /// result: for writes, whose result is a row count.
    pub async fn run_to_completion(
        &self,
        df: DataFrame,
        deadline: Option<Instant>,
    ) -> Result<Vec<RecordBatch>, Status> {
        self.stream(vec![Frame::new(df)], deadline, CancellationToken::new())
            .await?
            .try_collect()
            .await
    }

    /// The deadline of a query starting now.
    pub fn deadline(&self) -> Option<Instant> {
        self.limits.timeout.map(|t| Instant::now() + t)
    }

    /// Runs `frames` one after the other as one stream of batches, under the memory limit, the
    /// `deadline` and `cancel`; returns once the first frame has started (an error in planning
    /// it is returned here, not in the stream). The frames run on the query threads; the stream
    /// receives their batches, and ends the query (dropping its work) at the deadline, on
    /// `cancel`, or when it is dropped.
    pub async fn stream(
        &self,
        frames: Vec<Frame>,
        deadline: Option<Instant>,
        cancel: CancellationToken,
    ) -> Result<BatchStream, Status> {
        if frames.is_empty() {
            return Err(FlightServerError::Internal("no statement to run".into()).into());
        }
        let timeout = self.limits.timeout;
        let (started_sender, started) = oneshot::channel();
        let (batch_sender, batches) = mpsc::channel(RESULT_BUFFER);
        let executor = self.clone();
        self.runtime
            .spawn(async move { executor.forward(frames, started_sender, batch_sender).await });
        let started = async {
            started.await.map_err(|_| {
                DataFusionError::Internal("the query ended before it started".to_string())
            })?
        };
        guard(started, deadline, &cancel, timeout)
            .await
            .map_err(|e| e.into_status())?;
        Ok(guarded(
            Outgoing::released_once_sent(ReceiverStream::new(batches)),
            deadline,
            cancel,
            timeout,
        ))
    }

    /// Executes `frames` in turn (on the query threads), saying on `started` when the first one
    /// has started (or why it could not) and then sending every batch, each with the memory it
    /// holds until it is sent; stops as soon as the receiver is gone.
    async fn forward(
        self,
        frames: Vec<Frame>,
        started: oneshot::Sender<Result<()>>,
        batches: mpsc::Sender<Result<Outgoing>>,
    ) {
        let mut started = Some(started);
        for frame in frames {
            let (mut stream, pool) = match self.execute(frame).await {
                Ok(running) => running,
                Err(e) => {
                    match started.take() {
                        Some(sender) => {
                            let _ = sender.send(Err(e));
                        }
                        None => {
                            let _ = batches.send(Err(e)).await;
                        }
                    }
                    return;
                }
            };
            if let Some(sender) = started.take() {
                if sender.send(Ok(())).is_err() {
                    return;
                }
            }
            // One consumer of the frame's pool, registered once; each batch reserves its share.
            let sending = MemoryConsumer::new("result encoding").register(&pool);
            loop {
                let item = tokio::select! {
                    biased;
                    _ = batches.closed() => return,
                    item = stream.next() => item,
                };
                let Some(item) = item else { break };
                let item = item.and_then(|batch| Outgoing::reserve(batch, &sending));
                let failed = item.is_err();
                if batches.send(item).await.is_err() || failed {
                    return;
                }
            }
        }
    }

    /// Starts one frame with its own memory pool, which it returns with the stream.
    async fn execute(
        &self,
        frame: Frame,
    ) -> Result<(
        datafusion::execution::SendableRecordBatchStream,
        Arc<dyn MemoryPool>,
    )> {
        let task = self.task_context(&frame.df)?;
        let plan = match frame.plan {
            FramePlan::Fresh => frame.df.create_physical_plan().await?,
            FramePlan::Optimized(seed) => {
                let (state, plan) = frame.df.into_parts();
                let physical = state
                    .query_planner()
                    .create_physical_plan(&plan, &state)
                    .await?;
                if let Some(seed) = seed {
                    seed.keep(&physical, state.config().options());
                }
                physical
            }
            FramePlan::Physical(physical) => {
                self.plans.physical.fetch_add(1, Ordering::Relaxed);
                physical
            }
        };
        let pool = task.memory_pool().clone();
        Ok((datafusion::physical_plan::execute_stream(plan, task)?, pool))
    }

    fn task_context(&self, df: &DataFrame) -> Result<Arc<TaskContext>> {
        let task = df.task_ctx();
        let Some(bytes) = self.limits.memory else {
            return Ok(Arc::new(task));
        };
        let pool = TrackConsumersPool::new(GreedyMemoryPool::new(bytes), REPORTED_CONSUMERS);
        let runtime = RuntimeEnvBuilder::from_runtime_env(task.runtime_env().as_ref())
            .with_memory_pool(Arc::new(pool))
            .build_arc()?;
        Ok(Arc::new(task.with_runtime(runtime)))
    }
}

/// A fresh session over `catalog` with the server's `limits`, running jobs on `scheduler`.
fn new_session(
    catalog: &Arc<Catalog>,
    limits: &QueryLimits,
    scheduler: &Arc<JobScheduler>,
) -> QuiverSession {
    let runtime = match limits.memory {
        // Commands the session runs itself (CREATE TABLE ... AS, COPY ... FROM) reserve from a
        // pool of the query memory limit too.
        Some(bytes) => {
            let pool = TrackConsumersPool::new(GreedyMemoryPool::new(bytes), REPORTED_CONSUMERS);
            RuntimeEnv {
                memory_pool: Arc::new(pool),
                ..RuntimeEnv::default()
            }
        }
        None => RuntimeEnv::default(),
    };
    QuiverSession::with_runtime_and_scheduler(catalog.clone(), Arc::new(runtime), scheduler.clone())
}

/// How many times its size a result batch holds while it is sent: the batch, its Arrow IPC
/// encoding, and gRPC's message buffer.
const SENDING_COPIES: usize = 3;

/// A result batch on its way to the client, with the memory it holds (reserved from its
/// query's pool) until it is sent.
struct Outgoing {
    batch: RecordBatch,
    reservation: MemoryReservation,
}

impl Outgoing {
    /// `batch`, reserving what sending it holds beside `sending` (the query's result encoding):
    /// a result too large to send within the query's memory limit fails with
    /// `RESOURCE_EXHAUSTED` before it is encoded.
    fn reserve(batch: RecordBatch, sending: &MemoryReservation) -> Result<Self> {
        let bytes = batch
            .columns()
            .iter()
            .map(|column| column.to_data().get_slice_memory_size())
            .sum::<Result<usize, _>>()?;
        let reservation = sending.new_empty();
        reservation.try_grow(bytes.saturating_mul(SENDING_COPIES))?;
        Ok(Self { batch, reservation })
    }

    /// The batches of `outgoing`, each releasing its reservation when the next one is asked
    /// for: the Flight encoder asks for the next batch once it has handed on every message of
    /// the last.
    fn released_once_sent(
        outgoing: impl Stream<Item = Result<Outgoing>> + Send + 'static,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let state = (Box::pin(outgoing), None::<MemoryReservation>);
        futures::stream::unfold(state, |(mut outgoing, held)| async move {
            drop(held);
            match outgoing.next().await? {
                Ok(Outgoing { batch, reservation }) => {
                    Some((Ok(batch), (outgoing, Some(reservation))))
                }
                Err(e) => Some((Err(e), (outgoing, None))),
            }
        })
        .boxed()
    }
}

/// Why a guarded operation stopped early.
enum Stopped {
    Failed(DataFusionError),
    TimedOut(Option<Duration>),
    Cancelled,
}

impl Stopped {
    fn into_status(self) -> Status {
        match self {
            Stopped::Failed(e) => status_from_datafusion(&e),
            Stopped::TimedOut(limit) => {
                let limit = limit
                    .map(|d| humantime::format_duration(d).to_string())
                    .unwrap_or_default();
                Status::deadline_exceeded(format!(
                    "query stopped: it ran longer than the server's query timeout ({limit})"
                ))
            }
            Stopped::Cancelled => Status::cancelled("query cancelled"),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

/// Awaits `work` unless the deadline passes or `cancel` fires first.
async fn guard<T>(
    work: impl std::future::Future<Output = Result<T>>,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
    timeout: Option<Duration>,
) -> Result<T, Stopped> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Stopped::Cancelled),
        _ = sleep_until(deadline) => Err(Stopped::TimedOut(timeout)),
        result = work => result.map_err(Stopped::Failed),
    }
}

/// A stream that ends with an error once the deadline passes or `cancel` fires; the inner
/// stream (and the query's tasks) is dropped at that moment.
fn guarded(
    inner: BoxStream<'static, Result<RecordBatch>>,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    timeout: Option<Duration>,
) -> BatchStream {
    let state = Some((inner, cancel));
    futures::stream::unfold(state, move |state| async move {
        let (mut inner, cancel) = state?;
        match guard(
            async { inner.next().await.transpose() },
            deadline,
            &cancel,
            timeout,
        )
        .await
        {
            Ok(Some(batch)) => Some((Ok(batch), Some((inner, cancel)))),
            Ok(None) => None,
            Err(stopped) => Some((Err(stopped.into_status()), None)),
        }
    })
    .boxed()
}

/// `df` (an `EXPLAIN` without `ANALYZE`, which only describes plans) with one more row:
/// `statement_cache` and `note`.
async fn with_explain_row(session: &QuiverSession, df: DataFrame, note: &str) -> Result<DataFrame> {
    let schema = Arc::new(df.schema().as_arrow().clone());
    if schema.fields().len() != 2 {
        return Ok(df);
    }
    let row = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["statement_cache"])),
            Arc::new(StringArray::from(vec![note])),
        ],
    )?;
    let mut batches = df.collect().await?;
    batches.push(row);
    session.context().read_batches(batches)
}

/// Converts each bound value to the type the statement gives its placeholder (`$n` is the n-th
/// value), so that a value lands in the plan with the type the plan was built for: a list of
/// doubles bound to an `INSERT` into a `VECTOR(4)` column becomes a `FixedSizeList<Float32, 4>`.
/// Placeholders without a type (such as a vector function's argument) take the value as is.
fn typed_parameters(
    plan: &LogicalPlan,
    values: Vec<ScalarValue>,
) -> Result<Vec<ScalarValue>, Status> {
    let fields = plan
        .get_parameter_fields()
        .map_err(|e| status_from_datafusion(&e))?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let id = format!("${}", i + 1);
            let Some(Some(field)) = fields.get(&id) else {
                return Ok(value);
            };
            parameter_as(value, field.data_type(), &id)
                .map_err(|message| FlightServerError::InvalidRequest(message).into())
        })
        .collect()
}

/// `value` as the value of parameter `id`, of type `target`: itself, text read as a vector
/// where `target` is one (`'[1, 2, 3]'`, as pgvector reads it), or cast; the message says why
/// it cannot be.
fn parameter_as(value: ScalarValue, target: &DataType, id: &str) -> Result<ScalarValue, String> {
    if &value.data_type() == target {
        return Ok(value);
    }
    let text = matches!(
        value.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let failed = |e: &DataFusionError| {
        format!(
            "parameter {id}: cannot convert {} to {target}: {}",
            value.data_type(),
            quiver_planner::user_message(e)
        )
    };
    match target {
        DataType::FixedSizeList(_, dim) if text => {
            let read = value.to_array().and_then(|array| {
                let name = format!("parameter {id}");
                let vectors = to_vector::convert(&array, *dim as usize, &name)?;
                let vectors = datafusion::arrow::compute::cast(&vectors, target)?;
                ScalarValue::try_from_array(&vectors, 0)
            });
            read.map_err(|e| quiver_planner::user_message(&e))
        }
        _ => value.cast_to(target).map_err(|e| failed(&e)),
    }
}

/// The one statement of `sql`.
fn single_statement(sql: &str) -> Result<QuiverStatement> {
    let mut statements = parse_statements(sql)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(FlightServerError::InvalidRequest("the statement is empty".into()).into()),
        n => Err(FlightServerError::InvalidRequest(format!(
            "expected one statement, got {n}: send each statement separately"
        ))
        .into()),
    }
}

/// Whether a statement is a command, which runs when planned (everything except queries,
/// `EXPLAIN` and `INSERT`/`UPDATE`/`DELETE`).
pub fn is_command(statement: &QuiverStatement) -> bool {
    match statement {
        QuiverStatement::DataFusion(statement) => match statement.as_ref() {
            DFStatement::Statement(s) => !matches!(
                s.as_ref(),
                SqlStatement::Query(_)
                    | SqlStatement::Insert(_)
                    | SqlStatement::Update { .. }
                    | SqlStatement::Delete(_)
            ),
            DFStatement::Explain(_) => false,
            _ => true,
        },
        _ => true,
    }
}

/// Whether a statement is a query (`SELECT`, `VALUES`, or `EXPLAIN` of one), which changes
/// nothing in the session it is planned on.
fn is_query(statement: &QuiverStatement) -> bool {
    let QuiverStatement::DataFusion(statement) = statement else {
        return false;
    };
    let inner = match statement.as_ref() {
        DFStatement::Explain(explain) => explain.statement.as_ref(),
        other => other,
    };
    matches!(inner, DFStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)))
}

/// Whether a statement changes a session setting (`SET`), which a client keeps only in a session.
fn sets_session(statement: &QuiverStatement) -> bool {
    match statement {
        QuiverStatement::DataFusion(statement) => matches!(
            statement.as_ref(),
            DFStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Set(_))
        ),
        _ => false,
    }
}

/// Parses `sql` as exactly one statement and tells whether it is a command.
pub fn is_command_sql(sql: &str) -> Result<bool> {
    Ok(is_command(&single_statement(sql)?))
}

/// Whether a statement reads or writes files on the server's machine (`COPY`).
fn touches_server_files(statement: &QuiverStatement) -> bool {
    match statement {
        QuiverStatement::CopyFrom { .. } => true,
        QuiverStatement::DataFusion(statement) => match statement.as_ref() {
            DFStatement::CopyTo(_) => true,
            DFStatement::Explain(explain) => {
                matches!(explain.statement.as_ref(), DFStatement::CopyTo(_))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether a plan writes data.
fn writes(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Copy(_))
}

/// The number of rows a write reported (its `count` column), or -1 when the result is not a
/// row count.
pub fn affected_rows(batches: &[RecordBatch]) -> i64 {
    let mut total: u64 = 0;
    for batch in batches {
        let schema = batch.schema();
        let is_count = schema.fields().len() == 1
            && schema.field(0).name() == "count"
            && schema.field(0).data_type() == &DataType::UInt64;
        let Some(counts) = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .filter(|_| is_count)
        else {
            return -1;
        };
        total += counts.iter().flatten().sum::<u64>();
    }
    if batches.is_empty() {
        return -1;
    }
    i64::try_from(total).unwrap_or(i64::MAX)
}

/// The schema clients are told about: dictionaries replaced by their values, as the Flight
/// encoder sends them.
pub fn wire_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => {
                Field::clone(f).with_data_type(value.as_ref().clone())
            }
            _ => Field::clone(f),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Reads row `row` of a parameter batch as one value per placeholder.
pub fn parameter_row(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>> {
    batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column.as_ref(), row))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn batch(name: &str, values: Vec<u64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::UInt64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(values))]).expect("batch")
    }

    #[test]
    fn affected_rows_sums_count_columns_only() {
        assert_eq!(
            affected_rows(&[batch("count", vec![3]), batch("count", vec![4])]),
            7
        );
        assert_eq!(affected_rows(&[batch("n", vec![3])]), -1);
        assert_eq!(affected_rows(&[]), -1);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "count",
            DataType::Int64,
            false,
        )]));
        let signed =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).expect("batch");
        assert_eq!(affected_rows(&[signed]), -1);
    }

    #[test]
    fn commands_are_told_from_queries_and_writes() {
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "DELETE FROM t",
            "UPDATE t SET a = 1",
            "EXPLAIN SELECT 1",
        ] {
            assert!(!is_command_sql(sql).expect(sql), "{sql}");
        }
        for sql in [
            "CREATE TABLE t (a INT)",
            "DROP TABLE t",
            "CREATE DATABASE d",
            "SHOW DATABASES",
        ] {
            assert!(is_command_sql(sql).expect(sql), "{sql}");
        }
        assert!(is_command_sql("SELECT 1; SELECT 2").is_err());
        assert!(is_command_sql("  ").is_err());
    }

    #[test]
    fn wire_schema_hydrates_dictionaries() {
        let schema = Schema::new(vec![Field::new(
            "c",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        )]);
        assert_eq!(wire_schema(&schema).field(0).data_type(), &DataType::Utf8);
    }
}
