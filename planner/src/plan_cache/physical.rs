//! A reusable plan's physical plan, kept for the collection version and session settings it was
//! made with: later executions put their query vector into its index search instead of
//! planning the statement physically again.
//!
//! Invariants:
//! - A template is made only where swapping the query vector is all that planning with another
//!   vector would change: the statement's only placeholder appears only as the query argument of
//!   distance functions, as it is or cast to `Float32` values ([`query_parameter`]), and the
//!   physical plan is one index search ([`IndexKnnExec`]) under nodes that hold no distance
//!   expression (projections, limits). Every other plan is planned physically for each
//!   execution, as a fresh statement is.
//! - A template serves an execution only on the same dataset version of its collection (every
//!   write makes a new one) and the same session settings (`SET quiver.ef` changes the plan);
//!   otherwise the execution plans afresh and leaves a new template.
//! - A vector that does not read as one of the template's dimension (NULL, wrong length, NaN) is
//!   planned afresh, so its error is the one a fresh statement gives.
//! - Each execution runs new operator instances: no metrics or state are shared between
//!   executions.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use lance::Dataset;
use quiver_operators::functions::DistanceUdf;
use quiver_operators::index::index_knn::IndexKnnExec;
use quiver_operators::vector::scalar_vector;

/// A dataset version a plan reads: its location and version number.
pub type DatasetVersion = (String, u64);

/// The physical plan of one execution, ready for the next ones.
#[derive(Debug)]
pub struct PhysicalTemplate {
    plan: Arc<dyn ExecutionPlan>,
    /// The placeholder (0-based) whose value is the search's query vector.
    parameter: usize,
    /// The query vector's length.
    dimension: usize,
    /// The session settings it was planned with.
    options: Arc<ConfigOptions>,
    /// The dataset version its search reads.
    version: DatasetVersion,
    /// That dataset, to ask for its newest version.
    dataset: Arc<Dataset>,
    /// The schema of the logical plan it was made from.
    schema: DFSchemaRef,
}

/// Where a reusable plan keeps its template, shared with the executions that may leave one.
pub type TemplateCell = Arc<Mutex<Option<Arc<PhysicalTemplate>>>>;

/// What an execution planned physically needs to leave a template for later ones.
#[derive(Debug)]
pub struct TemplateSeed {
    cell: TemplateCell,
    parameter: usize,
    value: ScalarValue,
    schema: DFSchemaRef,
}

impl TemplateSeed {
    /// A seed for an execution whose query vector, placeholder `parameter`, is `value`;
    /// `schema` is its bound plan's. A template it keeps goes to `cell`.
    pub fn new(
        cell: TemplateCell,
        parameter: usize,
        value: ScalarValue,
        schema: DFSchemaRef,
    ) -> Self {
        Self {
            cell,
            parameter,
            value,
            schema,
        }
    }

    /// Keeps `plan` (planned from this execution's bound plan with the session settings
    /// `options`) as the template of later executions, if it is one index search whose query
    /// is this execution's vector.
    pub fn keep(self, plan: &Arc<dyn ExecutionPlan>, options: &Arc<ConfigOptions>) {
        let Some(search) = only_index_search(plan) else {
            return;
        };
        let query = &search.search().query;
        match read_vector(&self.value) {
            Some(value) if value.as_ref() == query.as_ref() => {}
            _ => return,
        }
        let dataset = search.dataset();
        let template = PhysicalTemplate {
            plan: Arc::clone(plan),
            parameter: self.parameter,
            dimension: query.len(),
            options: Arc::clone(options),
            version: (dataset.uri().to_string(), dataset.version().version),
            dataset: Arc::clone(dataset),
            schema: self.schema,
        };
        *self.cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(template));
    }
}

impl PhysicalTemplate {
    /// The schema of the statement's result, as its logical plan has it.
    pub fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// The dataset version its search reads.
    pub fn version(&self) -> &DatasetVersion {
        &self.version
    }

    /// The newest version of the dataset its search reads, as the store has it now.
    pub async fn latest_version(&self) -> Result<DatasetVersion> {
        let latest = self
            .dataset
            .latest_version_id()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok((self.version.0.clone(), latest))
    }

    /// The plan for an execution binding `values` with session settings `options`, reading
    /// `version`; `None` where the template does not serve it (see the module doc).
    pub fn instantiate(
        &self,
        values: &[ScalarValue],
        options: &Arc<ConfigOptions>,
        version: &DatasetVersion,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if version != &self.version || !same_settings(&self.options, options) {
            return Ok(None);
        }
        let Some(query) = values.get(self.parameter).and_then(read_vector) else {
            return Ok(None);
        };
        if query.len() != self.dimension {
            return Ok(None);
        }
        let plan = Arc::clone(&self.plan)
            .transform_up(|node| {
                let fresh: Arc<dyn ExecutionPlan> = match node.downcast_ref::<IndexKnnExec>() {
                    Some(search) => Arc::new(search.with_query(Arc::clone(&query))?),
                    None => node.reset_state()?,
                };
                Ok(Transformed::yes(fresh))
            })?
            .data;
        Ok(Some(plan))
    }
}

/// `value` read as a query vector, if it is a non-NULL vector of finite numbers.
fn read_vector(value: &ScalarValue) -> Option<Arc<[f32]>> {
    scalar_vector(value, "query", 2)
        .ok()
        .flatten()
        .map(Arc::from)
}

/// Whether two sets of session settings are the same (the same options shared, or equal ones).
fn same_settings(a: &Arc<ConfigOptions>, b: &Arc<ConfigOptions>) -> bool {
    Arc::ptr_eq(a, b)
        || a.entries()
            .iter()
            .map(|e| (&e.key, &e.value))
            .eq(b.entries().iter().map(|e| (&e.key, &e.value)))
}

/// The plan's only index search, if it is one under nodes that hold no distance expression.
fn only_index_search(plan: &Arc<dyn ExecutionPlan>) -> Option<&IndexKnnExec> {
    if let Some(search) = plan.downcast_ref::<IndexKnnExec>() {
        // A filter such as `l2_distance(embedding, $1) < 0.5` holds the query vector too.
        let filtered_by_distance = search
            .filter()
            .is_some_and(|filter| filter.exists(|e| Ok(is_distance_call(e))).unwrap_or(true));
        return (!filtered_by_distance).then_some(search);
    }
    let passes = match plan.downcast_ref::<ProjectionExec>() {
        Some(projection) => !projection.expr().iter().any(|p| calls_a_distance(&p.expr)),
        None => {
            plan.downcast_ref::<CooperativeExec>().is_some()
                || plan.downcast_ref::<GlobalLimitExec>().is_some()
                || plan.downcast_ref::<LocalLimitExec>().is_some()
        }
    };
    match plan.children().as_slice() {
        [child] if passes => only_index_search(child),
        _ => None,
    }
}

/// Whether `expr` calls a distance function anywhere.
fn calls_a_distance(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.exists(|e| {
        Ok(
            ScalarFunctionExpr::try_downcast_func::<DistanceUdf>(e.as_ref())
                .and_then(|call| call.fun().inner().downcast_ref::<DistanceUdf>())
                .is_some(),
        )
    })
    .unwrap_or(true)
}

/// The 0-based position of the placeholder that is only ever a query vector in `plan`: the
/// plan has one placeholder (used once or more), and each use is an argument of a distance
/// function, as it is or cast to a vector or list of `Float32`. `None` otherwise.
pub fn query_parameter(plan: &LogicalPlan) -> Option<usize> {
    let mut ids: Vec<String> = Vec::new();
    let (mut uses, mut as_query) = (0usize, 0usize);
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::Placeholder(p) => {
                        uses += 1;
                        if !ids.contains(&p.id) {
                            ids.push(p.id.clone());
                        }
                    }
                    Expr::ScalarFunction(call)
                        if call.func.inner().downcast_ref::<DistanceUdf>().is_some() =>
                    {
                        as_query += call.args.iter().filter(|a| is_query_placeholder(a)).count();
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    match ids.as_slice() {
        [id] if uses == as_query => id.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1),
        _ => None,
    }
}

/// Whether `expr` is a call of a distance function.
fn is_distance_call(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(call) if call.func.inner().downcast_ref::<DistanceUdf>().is_some())
}

/// Whether a distance function's argument is a placeholder, as it is or cast to a vector or
/// list of `Float32` (the cast reads the values as the search reads them).
fn is_query_placeholder(arg: &Expr) -> bool {
    let (inner, to) = match arg {
        Expr::Placeholder(_) => return true,
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr.as_ref(), field.data_type())
        }
        _ => return false,
    };
    let item = match to {
        DataType::FixedSizeList(item, _) | DataType::List(item) | DataType::LargeList(item) => item,
        _ => return false,
    };
    matches!(inner, Expr::Placeholder(_)) && item.data_type() == &DataType::Float32
}
