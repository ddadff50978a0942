//! A Quiver SQL session: DataFusion with Quiver's catalog, types, functions and rules. Its
//! statements are parsed and run by [`crate::statements`].

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{plan_err, Result, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::ObjectName;
use quiver_catalog::{Catalog, DEFAULT_DATABASE};

use crate::catalog::provider::{QuiverCatalogList, CATALOG_NAME};
use crate::catalog::system::SystemSchema;
use crate::config::QuiverConfig;
use crate::cooperative_joins::CooperativeJoins;
use crate::jobs::{JobScheduler, SchedulerConfig};
use crate::knn::function::{KnnFunction, KNN_FUNCTION};
use crate::knn::rule::KnnRule;
use crate::progress::ProgressListener;
use crate::sql::bounded::register_bounded_functions;
use crate::sql::number_list::NumberListPlanner;
use crate::sql::types::VectorTypePlanner;
use crate::write::update_assignments::InlineUpdateAssignments;

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
        let scheduler = JobScheduler::new(catalog.clone(), SchedulerConfig::default());
        Self::with_runtime_and_scheduler(catalog, runtime, scheduler)
    }

    /// A new session whose statements run in `runtime` and whose jobs run on `scheduler`: a
    /// server shares one scheduler among its sessions, and a session made this way builds no
    /// scheduler of its own (which costs a DataFusion context of its own).
    pub fn with_runtime_and_scheduler(
        catalog: Arc<Catalog>,
        runtime: Arc<RuntimeEnv>,
        scheduler: Arc<JobScheduler>,
    ) -> Self {
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
            .with_physical_optimizer_rule(Arc::new(KnnRule))
            .with_physical_optimizer_rule(Arc::new(CooperativeJoins));
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
        // In place of DataFusion's `repeat`, `lpad`, `range`, ...
        register_bounded_functions(&ctx);
        ctx.register_udtf(KNN_FUNCTION, Arc::new(KnnFunction));
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
