//! `knn(rows, 'column', queries, k [, 'metric'])`: many k-NN searches in one statement.
//!
//! ```sql
//! SELECT query_id, id, distance
//! FROM knn('docs', 'embedding', (SELECT id, embedding FROM questions), 10);
//! ```
//!
//! `rows` is a collection name (`'docs'`, `'shop.docs'`, or a snapshot `'docs@nightly'`) or a
//! subquery (`(SELECT * FROM docs WHERE category = 'x')`: its filter runs before the search);
//! `queries` is a subquery or a table name whose vector column holds the query vectors. The
//! result has, for every query in order, its `k` nearest rows, nearest first: `query_index` (the
//! query's 0-based position), the queries' other columns prefixed `query_`, the rows' columns,
//! and `distance`. It runs as one [`BatchKnnExec`]: one scan of the rows for all queries.
//!
//! DataFusion plans a table function's arguments as expressions, and an `EXISTS` subquery is the
//! one expression that may carry a whole multi-column query. So before planning,
//! [`rewrite_knn_calls`] turns the `rows` and `queries` arguments into `EXISTS (subquery)`, and
//! [`KnnFunction`] takes the planned subqueries back out of them; nothing ever evaluates the
//! `EXISTS`.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_datafusion_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, ObjectNamePart, TableFactor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use quiver_operators::distance::Metric;
use quiver_operators::exact::batch_knn::{batch_knn_schema, BatchKnnExec, BatchKnnSpec};
use quiver_operators::vector::is_vector_type;
use quiver_operators::OperatorError;

use crate::knn::rule::MAX_K;
use crate::sql::rewrite::{rewrite_statement, string_arg, table_name};

/// The function's name in SQL.
pub const KNN_FUNCTION: &str = "knn";

const USAGE: &str = "knn(rows, 'column', queries, k [, 'metric']): rows and queries are table \
                     names ('docs') or subqueries ((SELECT ...)), k a positive integer, metric \
                     one of l2, cosine, inner_product, negative_inner_product";

fn usage_error(problem: &str) -> DataFusionError {
    plan_datafusion_err!("{problem}; usage: {USAGE}")
}

struct KnnCalls;

impl KnnCalls {
    /// `'name'` or `(SELECT ...)` as `EXISTS (SELECT ...)`.
    fn as_exists(arg: &mut FunctionArg) -> Result<()> {
        let query = if let Some(name) = string_arg(arg) {
            let sql = format!("SELECT * FROM {}", table_name(&name));
            Parser::new(&GenericDialect)
                .try_with_sql(&sql)?
                .parse_query()?
        } else if let FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Subquery(query))) = arg {
            query.clone()
        } else {
            return Err(usage_error(&format!(
                "knn: '{arg}' is neither a table name nor a subquery"
            )));
        };
        *arg = FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Exists {
            subquery: query,
            negated: false,
        }));
        Ok(())
    }
}

impl VisitorMut for KnnCalls {
    type Break = DataFusionError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Self::Break> {
        let TableFactor::Table {
            name,
            args: Some(call),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        if !matches!(name.0.as_slice(), [ObjectNamePart::Identifier(i)]
            if i.value.eq_ignore_ascii_case(KNN_FUNCTION))
        {
            return ControlFlow::Continue(());
        }
        if !(4..=5).contains(&call.args.len()) {
            return ControlFlow::Break(usage_error(&format!(
                "knn takes 4 or 5 arguments, got {}",
                call.args.len()
            )));
        }
        for i in [0, 2] {
            if let Err(e) = Self::as_exists(&mut call.args[i]) {
                return ControlFlow::Break(e);
            }
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites the `rows` and `queries` arguments of every `knn(...)` call into `EXISTS`
/// subqueries, the form [`KnnFunction`] reads (see the module documentation).
pub fn rewrite_knn_calls(statement: &mut DFStatement) -> Result<()> {
    rewrite_statement(statement, &mut KnnCalls)
}

/// The `knn` table function.
#[derive(Debug, Default)]
pub struct KnnFunction;

fn subquery_plan(expr: &Expr, what: &str) -> Result<LogicalPlan> {
    match expr {
        Expr::Exists(exists) if exists.subquery.outer_ref_columns.is_empty() => {
            Ok(exists.subquery.subquery.as_ref().clone())
        }
        _ => Err(usage_error(&format!(
            "knn: {what} must be a table name or a subquery"
        ))),
    }
}

fn string_literal(expr: &Expr, what: &str) -> Result<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => {
            Ok(s.clone())
        }
        _ => Err(usage_error(&format!(
            "knn: {what} must be a string literal"
        ))),
    }
}

fn k_literal(expr: &Expr) -> Result<usize> {
    // An integer literal only: a fraction (`1.5`) is refused, not truncated.
    let integer = |value: &ScalarValue| {
        if value.data_type().is_integer() {
            value
                .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
                .ok()
        } else {
            None
        }
    };
    let k = match expr {
        Expr::Literal(value, _) => integer(value),
        Expr::Negative(inner) => match inner.as_ref() {
            Expr::Literal(value, _) => integer(value).and_then(|v| v.arithmetic_negate().ok()),
            _ => None,
        },
        _ => None,
    };
    let Some(ScalarValue::Int64(Some(k))) = k else {
        let given = match expr {
            Expr::Literal(value, _) => value.to_string(),
            other => other.to_string(),
        };
        return Err(usage_error(&format!(
            "knn: k must be an integer literal, got {given}"
        )));
    };
    match usize::try_from(k) {
        Ok(n) if (1..=MAX_K).contains(&n) => Ok(n),
        _ => Err(OperatorError::InvalidK { k, max: MAX_K }.into()),
    }
}

fn metric(name: &str) -> Result<Metric> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "l2" | "l2_distance" | "euclidean" => Metric::L2,
        "cosine" | "cosine_distance" => Metric::Cosine,
        "inner_product" | "ip" | "dot" => Metric::InnerProduct,
        "negative_inner_product" => Metric::NegativeInnerProduct,
        other => return Err(usage_error(&format!("knn: unknown metric '{other}'"))),
    })
}

/// The index of the column named `name` (exactly, else case-insensitively) in `plan`'s output.
fn column_index(plan: &LogicalPlan, name: &str) -> Option<usize> {
    let fields = plan.schema().fields();
    fields.iter().position(|f| f.name() == name).or_else(|| {
        fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
    })
}

impl TableFunctionImpl for KnnFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(4..=5).contains(&exprs.len()) {
            return Err(usage_error(&format!(
                "knn takes 4 or 5 arguments, got {}",
                exprs.len()
            )));
        }
        let rows = subquery_plan(&exprs[0], "rows")?;
        let column_name = string_literal(&exprs[1], "the vector column")?;
        let queries = subquery_plan(&exprs[2], "queries")?;
        let k = k_literal(&exprs[3])?;
        let metric = match exprs.get(4) {
            Some(e) => metric(&string_literal(e, "the metric")?)?,
            None => Metric::L2,
        };
        let Some(column) = column_index(&rows, &column_name) else {
            let names: Vec<&str> = rows
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            return plan_err!(
                "knn: the rows have no column '{column_name}' (columns: {})",
                names.join(", ")
            );
        };
        let vector_columns: Vec<usize> = queries
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| is_vector_type(f.data_type()))
            .map(|(i, _)| i)
            .collect();
        let query_column = match vector_columns.as_slice() {
            [one] => *one,
            [] => return plan_err!("knn: the queries have no vector column"),
            _ => column_index(&queries, &column_name)
                .filter(|i| vector_columns.contains(i))
                .ok_or_else(|| {
                    plan_datafusion_err!(
                        "knn: the queries have several vector columns; select one, or name it \
                         '{column_name}' like the searched column"
                    )
                })?,
        };
        let spec = BatchKnnSpec {
            query_column,
            column,
            metric,
            k,
        };
        let schema =
            batch_knn_schema(queries.schema().as_arrow(), rows.schema().as_arrow(), &spec)?;
        Ok(Arc::new(KnnTable {
            rows,
            queries,
            spec,
            schema,
        }))
    }
}

/// The result of one `knn(...)` call, planned when scanned.
#[derive(Debug)]
struct KnnTable {
    rows: LogicalPlan,
    queries: LogicalPlan,
    spec: BatchKnnSpec,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for KnnTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = state.create_physical_plan(&self.rows).await?;
        let queries = state.create_physical_plan(&self.queries).await?;
        let search: Arc<dyn ExecutionPlan> =
            Arc::new(BatchKnnExec::try_new(queries, rows, self.spec.clone())?);
        let Some(projection) = projection else {
            return Ok(search);
        };
        let schema = search.schema();
        let exprs = projection.iter().map(|i| {
            let name = schema.field(*i).name().clone();
            (
                Arc::new(Column::new(&name, *i)) as Arc<dyn PhysicalExpr>,
                name,
            )
        });
        Ok(Arc::new(ProjectionExec::try_new(exprs, search)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::{parse_statements, QuiverStatement};

    fn rewrite(sql: &str) -> Result<String> {
        let mut statements = parse_statements(sql)?;
        let QuiverStatement::DataFusion(statement) = &mut statements[0] else {
            panic!("not a DataFusion statement");
        };
        rewrite_knn_calls(statement)?;
        Ok(statement.to_string())
    }

    #[test]
    fn names_and_subqueries_become_exists_arguments() {
        assert_eq!(
            rewrite("SELECT * FROM knn('Shop.Docs', 'v', (SELECT v FROM q WHERE a = 1), 3)")
                .unwrap(),
            r#"SELECT * FROM knn(EXISTS (SELECT * FROM "shop"."docs"), 'v', EXISTS (SELECT v FROM q WHERE a = 1), 3)"#
        );
        let err = rewrite("SELECT * FROM knn('docs', 'v', 3)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("knn takes 4 or 5 arguments, got 3"), "{err}");
        let err = rewrite("SELECT * FROM knn('docs', 'v', 42, 3)")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'42' is neither a table name nor a subquery"),
            "{err}"
        );
    }
}
