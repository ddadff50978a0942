//! Time travel: reading a snapshot in SQL without restoring it.
//!
//! `snapshot('docs', 'nightly')` (or `snapshot('db.docs', 'nightly')`) in a `FROM` clause is
//! rewritten, before planning, into the table name `"docs@nightly"` in the collection's database;
//! the catalog resolves such names to the snapshot's pinned Lance version, read-only. The quoted
//! name can also be written directly: `SELECT * FROM "docs@nightly"`. Everything that works on a
//! collection (filters, joins, vector search) works on it, and nothing written after the snapshot
//! appears.

use std::ops::ControlFlow;

use datafusion::common::{DataFusionError, Result};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, TableFactor, VisitorMut};

use crate::sql::rewrite::{rewrite_statement, string_arg, table_name};

/// Separates a collection from a snapshot in a time-travel table name.
pub const SNAPSHOT_SEPARATOR: char = '@';

/// Splits `collection@snapshot`.
pub fn split_snapshot_name(table: &str) -> Option<(&str, &str)> {
    table.split_once(SNAPSHOT_SEPARATOR)
}

struct SnapshotFunctions;

impl VisitorMut for SnapshotFunctions {
    type Break = DataFusionError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Self::Break> {
        let TableFactor::Table { name, args, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let is_snapshot = matches!(name.0.as_slice(), [ObjectNamePart::Identifier(i)]
            if i.value.eq_ignore_ascii_case("snapshot"));
        let Some(call) = args.as_ref().filter(|_| is_snapshot) else {
            return ControlFlow::Continue(());
        };
        let parsed: Option<Vec<String>> = call.args.iter().map(string_arg).collect();
        let Some([collection, snapshot]) = parsed.as_deref() else {
            return ControlFlow::Break(DataFusionError::Plan(
                "snapshot() takes two string literals: snapshot('collection', 'snapshot name')"
                    .to_string(),
            ));
        };
        let mut parts = table_name(collection).0;
        let Some(ObjectNamePart::Identifier(last)) = parts.pop() else {
            return ControlFlow::Continue(());
        };
        parts.push(ObjectNamePart::Identifier(Ident::with_quote(
            '"',
            format!(
                "{}{SNAPSHOT_SEPARATOR}{}",
                last.value,
                snapshot.to_lowercase()
            ),
        )));
        *name = ObjectName(parts);
        *args = None;
        ControlFlow::Continue(())
    }
}

/// Rewrites `snapshot('collection', 'name')` table functions into time-travel table names.
pub fn rewrite_snapshot_functions(statement: &mut DFStatement) -> Result<()> {
    rewrite_statement(statement, &mut SnapshotFunctions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::{parse_statements, QuiverStatement};

    fn rewrite(sql: &str) -> String {
        let mut statements = parse_statements(sql).unwrap();
        let QuiverStatement::DataFusion(statement) = &mut statements[0] else {
            panic!("not a DataFusion statement");
        };
        rewrite_snapshot_functions(statement).unwrap();
        statement.to_string()
    }

    #[test]
    fn snapshot_calls_become_table_names() {
        assert_eq!(
            rewrite("SELECT * FROM snapshot('docs', 'Nightly') AS s WHERE s.id = 1"),
            r#"SELECT * FROM "docs@nightly" AS s WHERE s.id = 1"#
        );
        assert_eq!(
            rewrite("SELECT id FROM snapshot('shop.items', 'n') JOIN items USING (id)"),
            r#"SELECT id FROM "shop"."items@n" JOIN items USING(id)"#
        );
        let mut statements = parse_statements("SELECT * FROM snapshot('docs')").unwrap();
        let QuiverStatement::DataFusion(statement) = &mut statements[0] else {
            panic!()
        };
        assert!(rewrite_snapshot_functions(statement).is_err());
    }
}
