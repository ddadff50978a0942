//! The statement cache: ad-hoc queries that differ only in their query vectors reuse one plan.
//!
//! A query's arrays of number literals (`[0.1, 0.2, ...]`, its query vectors) are lifted out as
//! parameters; what is left of its text, with the session's current database and SQL parser
//! settings, keys a [`ReusablePlan`] made by the first such query, as a prepared statement's
//! plan is. Later queries of that shape bind their vectors into it.
//!
//! Invariants:
//! - A cached plan answers exactly as planning the query afresh would: the lifted vectors plan
//!   to the same list literals ([`crate::sql::number_list`]), collections are bound at their
//!   newest versions ([`ReusablePlan::bind`]), and a query whose result columns would be named
//!   after a vector (an unaliased `l2_distance(embedding, [...])`) is never cached.
//! - Only queries are cached (not `EXPLAIN`, writes or commands), and only those with no
//!   placeholders of their own.
//! - The cache holds at most [`MAX_STATEMENTS`] shapes, the least recently used leaving first.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{lit, Expr as LogicalExpr, LogicalPlan};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Statement as SqlStatement, UnaryOperator, Value, VisitMut, VisitorMut,
};

use crate::plan_cache::reusable::ReusablePlan;
use crate::session::QuiverSession;
use crate::sql::number_list::number_list;
use crate::statements::QuiverStatement;

/// The most query shapes the cache keeps.
pub const MAX_STATEMENTS: u64 = 256;

/// A query with its vectors lifted out.
#[derive(Debug)]
pub struct LiftedQuery {
    /// The query with a placeholder (`$1`, `$2`, ...) where each vector was.
    pub statement: QuiverStatement,
    /// The vectors, in placeholder order.
    pub values: Vec<ScalarValue>,
    /// The query's text with its vectors lifted out.
    pub shape: String,
}

/// What the cache knows of one query shape.
#[derive(Debug, Clone)]
pub enum CachedShape {
    /// A plan to bind the vectors of each query of the shape into.
    Plan(Arc<ReusablePlan>),
    /// Queries of this shape are planned afresh each time (see the module doc).
    NotReusable,
}

/// The cache of query shapes.
#[derive(Debug)]
pub struct StatementCache {
    shapes: moka::future::Cache<String, CachedShape>,
}

impl Default for StatementCache {
    fn default() -> Self {
        Self {
            shapes: moka::future::Cache::new(MAX_STATEMENTS),
        }
    }
}

impl StatementCache {
    /// The key of `shape` on `session`: the current database and the SQL parser settings
    /// change what the same text means.
    pub fn key(session: &QuiverSession, shape: &str) -> String {
        let state = session.context().state();
        let options = state.config_options();
        format!(
            "{}\u{0}{:?}\u{0}{shape}",
            options.catalog.default_schema, options.sql_parser
        )
    }

    /// What the cache knows of `key`.
    pub async fn get(&self, key: &str) -> Option<CachedShape> {
        self.shapes.get(key).await
    }

    /// Remembers what `key`'s queries do.
    pub async fn insert(&self, key: String, shape: CachedShape) {
        self.shapes.insert(key, shape).await;
    }

    /// Forgets `key` (its plan's collection was dropped or changed).
    pub async fn remove(&self, key: &str) {
        self.shapes.invalidate(key).await;
    }
}

/// Whether `plan`'s result columns are named after one of the lifted placeholders: then the
/// plan made with placeholders does not name its columns as a fresh plan would.
pub fn names_a_placeholder(plan: &LogicalPlan, values: usize) -> bool {
    plan.schema()
        .fields()
        .iter()
        .any(|field| (1..=values).any(|i| field.name().contains(&format!("${i}"))))
}

/// `statement` with its vectors lifted out; `None` if it is not a query, has placeholders of
/// its own, or holds no vector.
pub fn lift_vectors(statement: &QuiverStatement) -> Option<LiftedQuery> {
    let QuiverStatement::DataFusion(inner) = statement else {
        return None;
    };
    let DFStatement::Statement(sql) = inner.as_ref() else {
        return None;
    };
    if !matches!(sql.as_ref(), SqlStatement::Query(_)) {
        return None;
    }
    let mut query = sql.clone();
    let mut lifter = VectorLifter::default();
    if query.visit(&mut lifter).is_break() || lifter.values.is_empty() {
        return None;
    }
    let shape = query.to_string();
    Some(LiftedQuery {
        statement: QuiverStatement::DataFusion(Box::new(DFStatement::Statement(query))),
        values: lifter.values,
        shape,
    })
}

/// Replaces each array of number literals with the next placeholder, keeping its value; breaks
/// on a placeholder the query has of its own.
#[derive(Default)]
struct VectorLifter {
    values: Vec<ScalarValue>,
}

impl VisitorMut for VectorLifter {
    type Break = DataFusionError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        if let Expr::Value(value) = expr {
            if matches!(value.value, Value::Placeholder(_)) {
                return ControlFlow::Break(DataFusionError::Plan(
                    "the query has placeholders of its own".into(),
                ));
            }
        }
        let Expr::Array(array) = expr else {
            return ControlFlow::Continue(());
        };
        let numbers: Option<Vec<LogicalExpr>> = array.elem.iter().map(number).collect();
        let Some(value) = numbers.as_deref().and_then(number_list) else {
            return ControlFlow::Continue(());
        };
        self.values.push(value);
        let placeholder = Value::Placeholder(format!("${}", self.values.len()));
        *expr = Expr::value(placeholder);
        ControlFlow::Continue(())
    }
}

/// A number literal (optionally negated) as the literal DataFusion plans it to: `Int64` for an
/// integer that fits, `Float64` for a decimal number. `None` for anything else.
fn number(expr: &Expr) -> Option<LogicalExpr> {
    let (text, negative) = match expr {
        Expr::Value(v) => (&v.value, false),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => (&v.value, true),
            _ => return None,
        },
        _ => return None,
    };
    let Value::Number(text, _) = text else {
        return None;
    };
    let signed = if negative {
        format!("-{text}")
    } else {
        text.clone()
    };
    if let Ok(i) = signed.parse::<i64>() {
        return Some(lit(i));
    }
    let decimal = text.contains(['.', 'e', 'E']);
    match signed.parse::<f64>() {
        Ok(f) if decimal && f.is_finite() => Some(lit(f)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parse_statements;

    fn lifted(sql: &str) -> Option<LiftedQuery> {
        let statement = parse_statements(sql).expect(sql).remove(0);
        lift_vectors(&statement)
    }

    #[test]
    fn vectors_are_lifted_and_the_rest_is_the_shape() {
        let a = lifted("SELECT id FROM docs ORDER BY l2_distance(embedding, [0.5, -1, 2]) LIMIT 3")
            .expect("a vector");
        let b = lifted("SELECT id FROM docs ORDER BY l2_distance(embedding, [7, 8, 9.25]) LIMIT 3")
            .expect("a vector");
        assert_eq!(a.shape, b.shape);
        assert!(a.shape.contains("$1"), "{}", a.shape);
        assert_eq!(a.values.len(), 1);
        // The list literal the planner makes of the same array: floats, as one element is.
        assert_eq!(
            Some(a.values[0].clone()),
            number_list(&[lit(0.5), lit(-1.0), lit(2.0)])
        );
        assert_eq!(
            Some(
                lifted("SELECT l2_distance(e, [1, -2]) AS d FROM t")
                    .expect("ints")
                    .values[0]
                    .clone()
            ),
            number_list(&[lit(1_i64), lit(-2_i64)])
        );
        let c = lifted("SELECT id FROM docs ORDER BY l2_distance(embedding, [1, 2, 3]) LIMIT 4")
            .expect("a vector");
        assert_ne!(a.shape, c.shape, "another LIMIT is another shape");
    }

    #[test]
    fn other_statements_are_not_lifted() {
        for sql in [
            "SELECT id FROM docs WHERE id = 3",
            "SELECT id FROM docs ORDER BY l2_distance(embedding, $1) LIMIT 3",
            "EXPLAIN SELECT id FROM docs ORDER BY l2_distance(embedding, [1, 2]) LIMIT 3",
            "INSERT INTO docs VALUES (1, [1, 2])",
            "SELECT ['a', 'b']",
        ] {
            assert!(lifted(sql).is_none(), "{sql}");
        }
    }
}
