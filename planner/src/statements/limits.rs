//! Limits a script is checked against before anything is planned, so that no statement text can
//! make planning take the server's memory or time: the size of the script and the length of an
//! `IN` list (planning keeps several expressions per listed value, kilobytes each: a list of a
//! million values took 9.6 GB).
//!
//! Nesting is bounded twice: to [`MAX_NESTING`] parentheses and brackets before parsing (the
//! parser backtracks over some nested forms, `NOT (NOT (...))`, taking time exponential in their
//! depth: 40 levels took over a minute), and by the parser (50 levels of expressions or
//! subqueries, an error beyond); DataFusion's planning and optimizing of what the parser accepts grow their stacks on the heap
//! where they recurse deeply (its `recursive_protection`), so no accepted statement can overflow
//! a thread's stack.

use std::ops::ControlFlow;

use datafusion::common::{DataFusionError, Result};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, VisitorMut};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::PlannerError;
use crate::sql::dialect::QuiverDialect;
use crate::sql::rewrite::rewrite_statement;

/// The largest script, in bytes (bulk loads go through `COPY ... FROM` or Flight SQL ingest).
pub const MAX_SCRIPT_BYTES: usize = 16 << 20;

/// The most values of one `IN (...)` list.
pub const MAX_IN_LIST: usize = 10_000;

/// The deepest nesting of parentheses and brackets a script may have.
pub const MAX_NESTING: usize = 32;

/// Refuses a script nesting parentheses and brackets deeper than [`MAX_NESTING`].
pub(super) fn check_nesting(sql: &str) -> Result<()> {
    // A script of fewer opening parentheses and brackets cannot nest deeper: most scripts are
    // not tokenized here.
    let opening = sql.bytes().filter(|b| matches!(b, b'(' | b'[')).count();
    if opening <= MAX_NESTING {
        return Ok(());
    }
    // A script that does not tokenize is left to the parser, which says why.
    let Ok(tokens) = Tokenizer::new(&QuiverDialect, sql).tokenize() else {
        return Ok(());
    };
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::LParen | Token::LBracket => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(PlannerError::LimitExceeded(format!(
                        "the statement nests parentheses or brackets more than {MAX_NESTING} \
                         deep; write it with less nesting (a CTE for a nested subquery)"
                    ))
                    .into());
                }
            }
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a script longer than [`MAX_SCRIPT_BYTES`].
pub(super) fn check_script_size(sql: &str) -> Result<()> {
    if sql.len() > MAX_SCRIPT_BYTES {
        return Err(PlannerError::LimitExceeded(format!(
            "the statement text is {} bytes, more than the {MAX_SCRIPT_BYTES} a script may have; \
             load rows with COPY ... FROM or Flight SQL bulk ingest",
            sql.len()
        ))
        .into());
    }
    Ok(())
}

/// Refuses an `IN` list of more than [`MAX_IN_LIST`] values anywhere in `statement`.
pub(super) fn check_in_lists(statement: &mut DFStatement) -> Result<()> {
    rewrite_statement(statement, &mut InListLength)
}

struct InListLength;

impl VisitorMut for InListLength {
    type Break = DataFusionError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        if let Expr::InList { list, .. } = expr {
            if list.len() > MAX_IN_LIST {
                return ControlFlow::Break(
                    PlannerError::LimitExceeded(format!(
                        "an IN list has {} values, more than the {MAX_IN_LIST} allowed; join \
                         with a table of the values instead",
                        list.len()
                    ))
                    .into(),
                );
            }
        }
        ControlFlow::Continue(())
    }
}
