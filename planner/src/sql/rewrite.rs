//! Rewrites of the SQL syntax tree that run before DataFusion plans a statement: a visitor
//! applied to every query a statement holds (a query, an `EXPLAIN`, a `COPY (query) TO`).

use std::ops::ControlFlow;

use datafusion::common::{DataFusionError, Result};
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Value, VisitMut, VisitorMut,
};

/// Applies `visitor` to every part of `statement`; the first error it breaks with is returned.
pub fn rewrite_statement<V>(statement: &mut DFStatement, visitor: &mut V) -> Result<()>
where
    V: VisitorMut<Break = DataFusionError>,
{
    let flow = match statement {
        DFStatement::Statement(inner) => inner.visit(visitor),
        DFStatement::Explain(explain) => return rewrite_statement(&mut explain.statement, visitor),
        DFStatement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(query) => query.visit(visitor),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The text of a function argument that is a string literal.
pub fn string_arg(arg: &FunctionArg) -> Option<String> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The table name a string such as `'docs'` or `'shop.docs'` names: one quoted, lower-cased
/// identifier per dot-separated part, as unquoted SQL names are.
pub fn table_name(text: &str) -> ObjectName {
    ObjectName(
        text.split('.')
            .map(|p| ObjectNamePart::Identifier(Ident::with_quote('"', p.to_lowercase())))
            .collect(),
    )
}

/// The call `name(args)`.
pub fn function_call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}
