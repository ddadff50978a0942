//! A Quiver SQL session: DataFusion with Quiver's catalog, types, functions and rules, plus the
//! statements Quiver runs itself.
//!
//! Every statement starts by refreshing the catalog, so it sees everything committed before it
//! began (by this process or another over the same root).

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{plan_err, Result, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use quiver_catalog::{Catalog, DEFAULT_DATABASE};

use crate::catalog_provider::{external, QuiverCatalogList, CATALOG_NAME};
use crate::config::QuiverConfig;
use crate::jobs::{JobScheduler, SchedulerConfig};
use crate::knn_function::{rewrite_knn_calls, KnnFunction, KNN_FUNCTION};
use crate::knn_rule::KnnRule;
use crate::number_list::NumberListPlanner;
use crate::progress::ProgressListener;
use crate::statement::{parse_statements, QuiverStatement};
use crate::system::SystemSchema;
use crate::time_travel::rewrite_snapshot_functions;
use crate::types::VectorTypePlanner;
use crate::update_assignments::InlineUpdateAssignments;
use crate::vector_cast::name_vector_casts;

/// A SQL session over one catalog.
#[derive(Clone)]
pub struct QuiverSession {
    catalog: Arc<Catalog>,
    ctx: SessionContext,
    progress: Option<Arc<dyn ProgressListener>>,
    scheduler: Arc<JobScheduler>,
}

impl std::fmt::Debug for QuiverSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuiverSession")
            .field("root", &self.catalog.root().display())
            .finish_non_exhaustive()
    }
}

impl QuiverSession {
    /// A new session over `catalog`, in the `default` database.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self::with_runtime(catalog, Arc::new(RuntimeEnv::default()))
    }

    /// A new session whose statements run in `runtime`: its memory pool bounds what the
    /// statements the session runs itself (`CREATE TABLE ... AS`, `COPY ... FROM`, index builds)
    /// may reserve.
    pub fn with_runtime(catalog: Arc<Catalog>, runtime: Arc<RuntimeEnv>) -> Self {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_DATABASE)
            .with_create_default_catalog_and_schema(false)
            .with_option_extension(QuiverConfig::default());
        // Lance stores Utf8; keep SQL strings in that type rather than Utf8View.
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        let system = Arc::new(SystemSchema::new(catalog.clone()));
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_catalog_list(Arc::new(QuiverCatalogList::new(catalog.clone(), system)))
            .with_type_planner(Arc::new(VectorTypePlanner))
            .with_optimizer_rule(Arc::new(InlineUpdateAssignments))
            .with_physical_optimizer_rule(Arc::new(KnnRule));
        // Before DataFusion's array planner, which would plan a query vector as a call.
        builder
            .expr_planners()
            .get_or_insert_with(Vec::new)
            .insert(0, Arc::new(NumberListPlanner));
        let state = builder.build();
        let ctx = SessionContext::new_with_state(state);
        for udf in quiver_operators::functions::all() {
            ctx.register_udf(udf.as_ref().clone());
        }
        ctx.register_udtf(KNN_FUNCTION, Arc::new(KnnFunction));
        let scheduler = JobScheduler::new(catalog.clone(), SchedulerConfig::default());
        Self {
            catalog,
            ctx,
            progress: None,
            scheduler,
        }
    }

    /// Runs this session's jobs on `scheduler` (a server shares one among its sessions).
    pub fn with_scheduler(mut self, scheduler: Arc<JobScheduler>) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// The scheduler running this session's jobs.
    pub fn scheduler(&self) -> &Arc<JobScheduler> {
        &self.scheduler
    }

    /// Reports the progress of long statements (index builds) to `listener`.
    pub fn with_progress(mut self, listener: Arc<dyn ProgressListener>) -> Self {
        self.progress = Some(listener);
        self
    }

    /// Where progress is reported, if anywhere.
    pub fn progress(&self) -> Option<Arc<dyn ProgressListener>> {
        self.progress.clone()
    }

    /// The catalog this session works on.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The DataFusion context underneath.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The current database.
    pub fn current_database(&self) -> String {
        self.ctx
            .state()
            .config_options()
            .catalog
            .default_schema
            .clone()
    }

    /// Plans (and, for commands, runs) one statement; queries and DML come back as lazy
    /// DataFrames that run when collected or streamed.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let mut statements = parse_statements(sql)?;
        if statements.len() != 1 {
            return plan_err!(
                "expected one statement, got {}; use run_script for several",
                statements.len()
            );
        }
        let statement = statements.remove(0);
        self.statement(statement).await
    }

    /// Runs every statement of a script in order, each to completion, and returns each
    /// statement's result.
    pub async fn run_script(&self, sql: &str) -> Result<Vec<Vec<RecordBatch>>> {
        let mut out = Vec::new();
        for statement in parse_statements(sql)? {
            out.push(self.statement(statement).await?.collect().await?);
        }
        Ok(out)
    }

    /// Plans (and, for commands, runs) one parsed statement.
    pub async fn statement(&self, statement: QuiverStatement) -> Result<DataFrame> {
        self.catalog.state().await.map_err(external)?;
        match statement {
            QuiverStatement::DataFusion(mut statement) => {
                rewrite_knn_calls(&mut statement)?;
                rewrite_snapshot_functions(&mut statement)?;
                let plan = self.ctx.state().statement_to_plan(*statement).await?;
                self.execute_plan(plan).await
            }
            QuiverStatement::CreateDatabase {
                name,
                if_not_exists,
            } => {
                self.catalog
                    .create_database(&normalize(&name), if_not_exists)
                    .await
                    .map_err(external)?;
                self.done()
            }
            QuiverStatement::DropDatabase {
                name,
                if_exists,
                cascade,
            } => {
                self.catalog
                    .drop_database(&normalize(&name), if_exists, cascade)
                    .await
                    .map_err(external)?;
                self.done()
            }
            QuiverStatement::DropTable {
                names,
                if_exists,
                cascade,
            } => {
                for name in names {
                    let (database, table) = self.resolve(&name)?;
                    self.catalog
                        .drop_collection(&database, &table, if_exists, cascade)
                        .await
                        .map_err(external)?;
                }
                self.done()
            }
            QuiverStatement::ShowDatabases => self.show_databases().await,
            QuiverStatement::Describe { name } => self.describe(&name).await,
            QuiverStatement::CreateIndex(create) => self.create_index(&create).await,
            QuiverStatement::DropIndex {
                name,
                table,
                if_exists,
            } => self.drop_index(&name, table.as_ref(), if_exists).await,
            QuiverStatement::ShowSetting { name } => self.show_setting(&name),
            QuiverStatement::ShowIndexes { table } => self.show_indexes(table.as_ref()).await,
            QuiverStatement::CreateSnapshot {
                name,
                table,
                comment,
            } => self.create_snapshot(&name, &table, comment).await,
            QuiverStatement::DropSnapshot {
                name,
                table,
                if_exists,
            } => self.drop_snapshot(&name, &table, if_exists).await,
            QuiverStatement::ShowSnapshots { table } => self.show_snapshots(table.as_ref()).await,
            QuiverStatement::DescribeSnapshot { name, table } => {
                self.describe_snapshot(&name, &table).await
            }
            statement @ QuiverStatement::Restore { .. } => self.restore(&statement).await,
            statement @ QuiverStatement::Vacuum { .. } => self.vacuum(&statement).await,
            QuiverStatement::ExplainJob(statement) => self.explain_job(&statement).await,
            QuiverStatement::ShowJobs => self.show_jobs().await,
            QuiverStatement::CancelJob { id } => self.cancel_job(id).await,
            QuiverStatement::CopyFrom {
                name,
                path,
                options,
            } => self.copy_from(&name, &path, &options).await,
            QuiverStatement::SetProperties { name, properties } => {
                let (database, table) = self.resolve(&name)?;
                self.catalog
                    .set_properties(&database, &table, &properties)
                    .await
                    .map_err(external)?;
                self.done()
            }
        }
    }

    /// Runs a DataFusion plan, intercepting the DDL that must go to Quiver's catalog.
    async fn execute_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                self.create_table(create).await
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(_)) => {
                plan_err!("CREATE VIEW is not supported: collections are Quiver's only tables")
            }
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_)) => plan_err!(
                "CREATE EXTERNAL TABLE is not supported; load files with COPY <table> FROM '<path>'"
            ),
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_) | WriteOp::Update) => {
                let input = name_vector_casts(dml.input.as_ref().clone())?;
                let dml = DmlStatement {
                    input: Arc::new(input),
                    ..dml
                };
                self.ctx.execute_logical_plan(LogicalPlan::Dml(dml)).await
            }
            other => self.ctx.execute_logical_plan(other).await,
        }
    }

    /// `SHOW quiver.<name>` (DataFusion's `SHOW` does not find extension settings).
    fn show_setting(&self, name: &str) -> Result<DataFrame> {
        let state = self.ctx.state();
        let entries = state
            .config_options()
            .extensions
            .get::<QuiverConfig>()
            .map(datafusion::common::config::ExtensionOptions::entries)
            .unwrap_or_default();
        let Some(entry) = entries.iter().find(|e| e.key == name) else {
            return plan_err!(
                "unknown setting 'quiver.{name}'; known: {}",
                entries
                    .iter()
                    .map(|e| format!("quiver.{}", e.key))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![format!("quiver.{name}")])),
                Arc::new(StringArray::from(vec![entry.value.clone()])),
            ],
        )?;
        self.result(batch)
    }

    /// An empty result, for commands.
    pub(crate) fn done(&self) -> Result<DataFrame> {
        self.ctx.read_empty()
    }

    /// A result made of one batch.
    pub(crate) fn result(&self, batch: RecordBatch) -> Result<DataFrame> {
        self.ctx.read_batch(batch)
    }

    /// Resolves a SQL name to `(database, collection)` against the current database.
    pub fn resolve(&self, name: &ObjectName) -> Result<(String, String)> {
        let reference = object_name_to_table_reference(name.clone(), true)?;
        self.resolve_reference(&reference)
    }

    /// Resolves a table reference to `(database, collection)`.
    pub fn resolve_reference(&self, reference: &TableReference) -> Result<(String, String)> {
        match reference {
            TableReference::Bare { table } => Ok((self.current_database(), table.to_string())),
            TableReference::Partial { schema, table } => {
                Ok((schema.to_string(), table.to_string()))
            }
            TableReference::Full {
                catalog,
                schema,
                table,
            } if catalog.as_ref() == CATALOG_NAME => Ok((schema.to_string(), table.to_string())),
            TableReference::Full { catalog, .. } => {
                plan_err!("unknown catalog '{catalog}': Quiver has one catalog, '{CATALOG_NAME}'")
            }
        }
    }
}

/// An identifier as SQL means it: lower-cased unless quoted.
pub fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}
