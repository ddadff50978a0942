//! A query planned once and run many times: its logical plan analysed and optimised with its
//! placeholders typed, then, for each execution, bound to that execution's values and to the
//! newest version of every collection it reads.
//!
//! Invariants:
//! - An execution never reads an older version of a collection than a fresh plan would: every
//!   collection scan is re-opened at its latest version when the plan is bound (a snapshot
//!   scan, pinned by name, stays on its snapshot).
//! - A collection that was dropped, or dropped and created again, or whose columns changed, is
//!   never scanned through the old plan: binding answers `None` and the caller plans afresh.
//! - Only queries over collections are reused: writes, commands, `EXPLAIN` and plans over other
//!   tables (the system tables, whose rows are read when they are opened) are planned afresh, and
//!   so are queries calling a function that is not immutable (`now()` is folded into a constant
//!   when a plan is optimised; `random()` must not be).
//! - A bound plan is what optimising the statement with its values would have made: after the
//!   values are substituted, constant expressions are folded again (a vector cast to the
//!   column's type becomes one literal), so physical planning, and the k-NN rules in it, see
//!   what they see in a fresh plan.
//! - Where the query vector is all that changes between executions of an index search, the
//!   physical plan of one execution serves the next ones on the same version and settings
//!   ([`crate::plan_cache::physical`]); binding then returns it instead of a logical plan.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan, Volatility};
use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
use datafusion::optimizer::{OptimizerContext, OptimizerRule};

use datafusion::common::config::ConfigOptions;
use datafusion::common::DFSchemaRef;
use datafusion::physical_plan::ExecutionPlan;
use quiver_catalog::{CatalogState, CollectionRecord};

use crate::catalog::table::CollectionTable;
use crate::plan_cache::physical::{query_parameter, PhysicalTemplate, TemplateCell, TemplateSeed};
use crate::session::QuiverSession;

/// A query's optimised plan with typed placeholders.
#[derive(Debug)]
pub struct ReusablePlan {
    plan: LogicalPlan,
    parameter_types: Vec<DataType>,
    /// The placeholder that is only ever the query vector of a k-NN search, if there is one:
    /// then the physical plan may be kept ([`PhysicalTemplate`]).
    query_parameter: Option<usize>,
    /// The physical plan kept from an earlier execution.
    template: TemplateCell,
}

/// One execution of a [`ReusablePlan`].
#[derive(Debug)]
pub enum BoundPlan {
    /// The physical plan an earlier execution made, with this execution's query vector, and the
    /// schema of the statement's result.
    Physical(Arc<dyn ExecutionPlan>, DFSchemaRef),
    /// The optimised plan bound to this execution's values, to be planned physically; the seed,
    /// if any, keeps the physical plan for later executions ([`TemplateSeed::keep`]).
    Logical(Box<LogicalPlan>, Option<TemplateSeed>),
}

impl BoundPlan {
    /// The logical plan bound to the values, if that is what was bound.
    pub fn logical(self) -> Option<LogicalPlan> {
        match self {
            BoundPlan::Logical(plan, _) => Some(*plan),
            BoundPlan::Physical(..) => None,
        }
    }
}

/// What `f` reads of the collection behind a scan, if the scan reads one.
fn with_collection<T>(scan: &TableScan, f: impl FnOnce(&CollectionTable) -> T) -> Option<T> {
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<CollectionTable>()?;
    Some(f(table))
}

/// A collection a plan scans: its record, whether it is a pinned (snapshot) version, its columns.
struct Scanned {
    record: CollectionRecord,
    pinned: bool,
    schema: SchemaRef,
}

/// Whether `plan` calls a function whose result may change between calls with the same
/// arguments.
fn calls_changing_functions(plan: &LogicalPlan) -> bool {
    let mut changing = false;
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|expr| {
            changing |= expr
                .exists(|e| {
                    Ok(matches!(e, Expr::ScalarFunction(f)
                        if f.func.signature().volatility != Volatility::Immutable))
                })
                .unwrap_or(true);
            Ok(if changing {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        Ok(if changing {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    changing
}

/// `plan` with `values` substituted for its placeholders and its constant expressions folded.
fn bind_values(plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan> {
    let bound = plan.with_param_values(values)?;
    let simplify = SimplifyExpressions::new();
    let context = OptimizerContext::new();
    Ok(bound
        .transform_up_with_subqueries(|node| simplify.rewrite(node, &context))?
        .data)
}

/// Whether every table `plan` reads is a collection, and `plan` is a query.
fn reads_only_collections(plan: &LogicalPlan) -> bool {
    if matches!(
        plan,
        LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
    ) {
        return false;
    }
    let mut only_collections = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if with_collection(scan, |_| ()).is_none() {
                only_collections = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    only_collections
}

/// The 0-based position of a positional placeholder (`$1` is 0).
fn position(id: &str) -> Option<usize> {
    id.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
}

impl ReusablePlan {
    /// Plans `plan` (a statement as [`QuiverSession::statement`] made it, placeholders in it)
    /// once for parameters of `types` (`types[0]` is `$1`'s): its untyped placeholders take
    /// those types, and it is analysed and optimised. `None` when the plan cannot be reused
    /// (see the module doc), or does not optimise with typed placeholders.
    pub fn new(
        session: &QuiverSession,
        plan: LogicalPlan,
        types: &[DataType],
    ) -> Result<Option<Self>> {
        if !reads_only_collections(&plan) || calls_changing_functions(&plan) {
            return Ok(None);
        }
        let typed = plan
            .transform_up_with_subqueries(|node| {
                node.map_expressions(|expr| {
                    expr.transform_up(|e| match e {
                        Expr::Placeholder(Placeholder { id, field: None }) => {
                            let field = position(&id)
                                .and_then(|i| types.get(i))
                                .map(|t| Arc::new(Field::new(&id, t.clone(), true)));
                            Ok(Transformed::yes(Expr::Placeholder(Placeholder {
                                id,
                                field,
                            })))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                })
            })?
            .data;
        let Ok(optimized) = session.context().state().optimize(&typed) else {
            return Ok(None);
        };
        Ok(Some(Self {
            query_parameter: query_parameter(&optimized),
            plan: optimized,
            parameter_types: types.to_vec(),
            template: TemplateCell::default(),
        }))
    }

    /// The types of the parameters this plan was made for.
    pub fn parameter_types(&self) -> &[DataType] {
        &self.parameter_types
    }

    /// The optimised plan bound to `values`, over the collection versions it was planned on:
    /// for the execution that made it.
    pub fn with_values(&self, values: Vec<ScalarValue>) -> Result<BoundPlan> {
        self.bound(self.plan.clone(), values)
    }

    /// `plan` (this plan over some versions) bound to `values`, with a seed to keep its
    /// physical plan where that may serve later executions.
    fn bound(&self, plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<BoundPlan> {
        let query = self
            .query_parameter
            .and_then(|parameter| Some((parameter, values.get(parameter)?.clone())));
        let bound = bind_values(plan, values)?;
        let seed = query.map(|(parameter, value)| {
            TemplateSeed::new(
                Arc::clone(&self.template),
                parameter,
                value,
                Arc::clone(bound.schema()),
            )
        });
        Ok(BoundPlan::Logical(Box::new(bound), seed))
    }

    /// One execution's plan: bound to `values` and to the newest version of each collection
    /// it reads, as `session` sees the catalog; the physical plan an earlier execution kept
    /// where it serves this one. `None` when a collection it reads was dropped or changed its
    /// columns since the plan was made: plan the statement afresh.
    pub async fn bind(
        &self,
        session: &QuiverSession,
        values: Vec<ScalarValue>,
    ) -> Result<Option<BoundPlan>> {
        let mut current: HashMap<String, Arc<CollectionTable>> = HashMap::new();
        let mut scans = Vec::new();
        self.plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                scans.extend(with_collection(scan, |table| Scanned {
                    record: table.record().clone(),
                    pinned: table.is_read_only(),
                    schema: TableProvider::schema(table),
                }));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        // As every statement does: start from a fresh enough catalog.
        let state = session
            .catalog()
            .fresh_state()
            .await
            .map_err(crate::error::external)?;
        let options = Arc::clone(session.context().state_ref().read().config().options());
        let kept = self
            .template
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(template) = kept {
            if let Some(plan) = kept_plan(&template, &scans, &state, &values, &options).await? {
                return Ok(Some(BoundPlan::Physical(plan, template.schema().clone())));
            }
        }
        for scanned in scans {
            let record = &scanned.record;
            if scanned.pinned || current.contains_key(&record.id) {
                continue;
            }
            let Some(now) = state.collection(&record.database, &record.name) else {
                return Ok(None);
            };
            if now.id != record.id {
                return Ok(None);
            }
            let fresh = CollectionTable::open(session.catalog().clone(), now.clone()).await?;
            if TableProvider::schema(&fresh) != scanned.schema {
                return Ok(None);
            }
            current.insert(record.id.clone(), Arc::new(fresh));
        }
        let rebound = self
            .plan
            .clone()
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::TableScan(mut scan) => {
                    let fresh = with_collection(&scan, |table| current.get(&table.record().id))
                        .flatten()
                        .cloned();
                    match fresh {
                        Some(table) => {
                            scan.source = provider_as_source(table);
                            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                        }
                        None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                    }
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        Ok(Some(self.bound(rebound, values)?))
    }
}

/// The kept physical plan for an execution binding `values` with session settings `options`,
/// where it serves it: every collection `scans` reads still is the one planned in the catalog
/// `state`, and the kept plan's dataset has no newer version (asked of the store without
/// opening the collection). `None` otherwise.
async fn kept_plan(
    template: &PhysicalTemplate,
    scans: &[Scanned],
    state: &CatalogState,
    values: &[ScalarValue],
    options: &Arc<ConfigOptions>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut pinned_only = true;
    for scanned in scans.iter().filter(|s| !s.pinned) {
        pinned_only = false;
        let record = &scanned.record;
        match state.collection(&record.database, &record.name) {
            Some(now) if now.id == record.id => {}
            _ => return Ok(None),
        }
    }
    // A snapshot's version never moves.
    let version = if pinned_only {
        template.version().clone()
    } else {
        template.latest_version().await?
    };
    template.instantiate(values, options, &version)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, FixedSizeListArray, Float32Array, Int64Array};
    use datafusion::dataframe::DataFrame;
    use datafusion::physical_plan::displayable;
    use quiver_catalog::location::DataRoot;
    use quiver_catalog::Catalog;

    use super::*;

    const KNN: &str = "SELECT id FROM docs ORDER BY l2_distance(embedding, $1) LIMIT 2";

    async fn session() -> (tempfile::TempDir, QuiverSession) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = DataRoot::open(dir.path().to_str().expect("utf-8"))
            .await
            .expect("root");
        let session = QuiverSession::new(Arc::new(Catalog::open(root).await.expect("catalog")));
        session
            .run_script(
                "CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR(2));
                 INSERT INTO docs VALUES (1, [0, 0]), (2, [1, 0]), (3, [5, 5]), (4, [9, 9]);",
            )
            .await
            .expect("docs");
        (dir, session)
    }

    /// A query vector as a client binds it.
    fn vector(x: f32, y: f32) -> ScalarValue {
        let values = Arc::new(Float32Array::from(vec![x, y]));
        let field = Arc::new(Field::new_list_field(DataType::Float32, true));
        ScalarValue::FixedSizeList(Arc::new(
            FixedSizeListArray::try_new(field, 2, values, None).expect("vector"),
        ))
    }

    /// The ids a plan returns, and its physical plan as `EXPLAIN` prints it.
    async fn run(session: &QuiverSession, plan: LogicalPlan) -> (Vec<i64>, String) {
        let state = session.context().state();
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await
            .expect("physical plan");
        let shown = displayable(physical.as_ref()).indent(true).to_string();
        let batches = DataFrame::new(state, plan).collect().await.expect("run");
        (ids(&batches), shown)
    }

    fn ids(batches: &[datafusion::arrow::array::RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let ids = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ids")
                    .clone();
                (0..ids.len()).map(move |i| ids.value(i))
            })
            .collect()
    }

    /// What the statement returns planned afresh with the vector written in it.
    async fn fresh(session: &QuiverSession, x: f32, y: f32) -> Vec<i64> {
        let sql = KNN.replace("$1", &format!("[{x}, {y}]"));
        ids(&session
            .sql(&sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run"))
    }

    async fn reusable(session: &QuiverSession) -> ReusablePlan {
        let plan = session.sql(KNN).await.expect("plan").into_parts().1;
        ReusablePlan::new(session, plan, &[vector(0.0, 0.0).data_type()])
            .expect("optimise")
            .expect("a query over a collection is reusable")
    }

    #[tokio::test]
    async fn a_bound_plan_searches_with_the_knn_operator_as_a_fresh_plan_does() {
        let (_dir, session) = session().await;
        let reusable = reusable(&session).await;
        for (x, y) in [(0.0, 0.0), (9.0, 8.0), (4.0, 6.0)] {
            let plan = reusable
                .bind(&session, vec![vector(x, y)])
                .await
                .expect("bind")
                .expect("unchanged collection")
                .logical()
                .expect("no index search: planned logically");
            let (found, shown) = run(&session, plan).await;
            assert_eq!(found, fresh(&session, x, y).await, "query ({x}, {y})");
            assert!(shown.contains("KnnExec"), "{shown}");
        }
    }

    /// A query vector as SQL text plans it: a list of `Float64`.
    fn text_vector(x: f64, y: f64) -> ScalarValue {
        ScalarValue::List(Arc::new(
            datafusion::arrow::array::ListArray::from_iter_primitive::<
                datafusion::arrow::datatypes::Float64Type,
                _,
                _,
            >([Some([Some(x), Some(y)])]),
        ))
    }

    #[tokio::test]
    async fn a_vector_of_another_type_is_folded_into_the_search_as_a_fresh_plan_does() {
        let (_dir, session) = session().await;
        let plan = session.sql(KNN).await.expect("plan").into_parts().1;
        let reusable = ReusablePlan::new(&session, plan, &[text_vector(0.0, 0.0).data_type()])
            .expect("optimise")
            .expect("reusable");
        for (x, y) in [(0.0, 0.0), (9.0, 8.0)] {
            let plan = reusable
                .bind(&session, vec![text_vector(x, y)])
                .await
                .expect("bind")
                .expect("unchanged collection")
                .logical()
                .expect("no index search: planned logically");
            let (found, shown) = run(&session, plan).await;
            assert_eq!(found, fresh(&session, x as f32, y as f32).await);
            // The cast of the vector to the column's type is folded, so the search is Quiver's.
            assert!(shown.contains("KnnExec"), "{shown}");
        }
    }

    #[tokio::test]
    async fn a_bound_plan_reads_the_newest_version_and_never_a_replaced_collection() {
        let (_dir, session) = session().await;
        let reusable = reusable(&session).await;
        session
            .sql("INSERT INTO docs VALUES (5, [8.9, 8.9])")
            .await
            .expect("insert")
            .collect()
            .await
            .expect("insert");
        let plan = reusable
            .bind(&session, vec![vector(9.0, 9.0)])
            .await
            .expect("bind")
            .expect("same collection")
            .logical()
            .expect("no index search: planned logically");
        assert_eq!(run(&session, plan).await.0, [4, 5]);

        session
            .run_script(
                "DROP TABLE docs; CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR(2))",
            )
            .await
            .expect("re-create");
        assert!(reusable
            .bind(&session, vec![vector(9.0, 9.0)])
            .await
            .expect("bind")
            .is_none());
        session.run_script("DROP TABLE docs").await.expect("drop");
        assert!(reusable
            .bind(&session, vec![vector(9.0, 9.0)])
            .await
            .expect("bind")
            .is_none());
    }

    #[tokio::test]
    async fn only_queries_over_collections_are_reused() {
        let (_dir, session) = session().await;
        for sql in [
            "INSERT INTO docs VALUES (9, [1, 1])",
            "SELECT count(*) FROM quiver.collections",
            "EXPLAIN SELECT id FROM docs",
            "SELECT id, now() AS at FROM docs",
            "SELECT id FROM docs ORDER BY random() LIMIT 1",
        ] {
            let plan = session.sql(sql).await.expect(sql).into_parts().1;
            assert!(
                ReusablePlan::new(&session, plan, &[]).expect(sql).is_none(),
                "{sql}"
            );
        }
    }

    /// `docs` with 300 more rows on a grid, and an HNSW index over all of them.
    async fn index_docs(session: &QuiverSession) {
        let rows: Vec<String> = (0..300)
            .map(|i| format!("({}, [{}, {}])", 10 + i, i % 20, i / 20))
            .collect();
        session
            .run_script(&format!(
                "INSERT INTO docs VALUES {}; \
                 CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops)",
                rows.join(", ")
            ))
            .await
            .expect("index");
    }

    /// Runs one execution as the server does (a logical plan planned physically leaves its
    /// template): the ids found, and whether a kept physical plan ran.
    async fn execute(session: &QuiverSession, bound: BoundPlan) -> (Vec<i64>, bool) {
        let state = session.context().state();
        let (physical, kept) = match bound {
            BoundPlan::Physical(plan, _) => (plan, true),
            BoundPlan::Logical(plan, seed) => {
                let physical = state
                    .query_planner()
                    .create_physical_plan(&plan, &state)
                    .await
                    .expect("physical plan");
                if let Some(seed) = seed {
                    seed.keep(&physical, state.config().options());
                }
                (physical, false)
            }
        };
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx())
            .await
            .expect("run");
        (ids(&batches), kept)
    }

    async fn bind_and_run(
        session: &QuiverSession,
        reusable: &ReusablePlan,
        x: f32,
        y: f32,
    ) -> (Vec<i64>, bool) {
        let bound = reusable
            .bind(session, vec![vector(x, y)])
            .await
            .expect("bind")
            .expect("unchanged collection");
        execute(session, bound).await
    }

    #[tokio::test]
    async fn an_index_search_keeps_its_physical_plan_while_version_and_settings_hold() {
        let (_dir, session) = session().await;
        index_docs(&session).await;
        let reusable = reusable(&session).await;
        let mut kept = Vec::new();
        for (x, y) in [(0.2, 0.1), (5.3, 7.9), (19.0, 14.2), (3.3, 3.6)] {
            let (found, physical) = bind_and_run(&session, &reusable, x, y).await;
            assert_eq!(found, fresh(&session, x, y).await, "query ({x}, {y})");
            kept.push(physical);
        }
        // The first execution plans and keeps its plan; the others put their vector in it.
        assert_eq!(kept, [false, true, true, true]);

        // Another setting: planned again (with the new `ef`), then kept again.
        session.run_script("SET quiver.ef = 37").await.expect("set");
        let (found, physical) = bind_and_run(&session, &reusable, 7.2, 2.9).await;
        assert!(!physical);
        assert_eq!(found, fresh(&session, 7.2, 2.9).await);
        assert!(bind_and_run(&session, &reusable, 7.2, 2.9).await.1);

        // A write makes a new version: planned again, and the new row is found.
        session
            .run_script("INSERT INTO docs VALUES (999, [5.3, 7.9])")
            .await
            .expect("insert");
        let (found, physical) = bind_and_run(&session, &reusable, 5.3, 7.9).await;
        assert!(!physical);
        assert_eq!(found[0], 999);
        assert_eq!(found, fresh(&session, 5.3, 7.9).await);
    }

    #[tokio::test]
    async fn a_query_vector_used_beside_the_search_is_planned_every_time() {
        let (_dir, session) = session().await;
        index_docs(&session).await;
        for sql in [
            // The filter holds the vector too.
            "SELECT id FROM docs WHERE l2_distance(embedding, $1) < 4 \
             ORDER BY l2_distance(embedding, $1) LIMIT 2",
            // The vector is also a result column.
            "SELECT id, $1 AS q FROM docs ORDER BY l2_distance(embedding, $1) LIMIT 2",
        ] {
            let plan = session.sql(sql).await.expect(sql).into_parts().1;
            let reusable = ReusablePlan::new(&session, plan, &[vector(0.0, 0.0).data_type()])
                .expect("optimise")
                .expect("reusable");
            for (x, y) in [(0.2, 0.1), (5.3, 7.9), (19.0, 14.2)] {
                let (found, physical) = bind_and_run(&session, &reusable, x, y).await;
                assert!(!physical, "{sql}");
                let literal = sql.replace("$1", &format!("[{x}, {y}]"));
                let expected = session
                    .sql(&literal)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run");
                assert_eq!(found, ids(&expected), "{sql} ({x}, {y})");
            }
        }
    }
}
