//! The SQL logic test driver: each `.slt` file runs against its own fresh data root.

use std::path::Path;

use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::{format_rows, TestDb};

/// A failed statement, carrying the message a user would see.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(pub String);

/// One `.slt` file's database.
pub struct QuiverSlt {
    db: TestDb,
}

impl QuiverSlt {
    /// A database over a fresh data root.
    pub async fn new() -> Self {
        Self {
            db: TestDb::without_faults().await,
        }
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for QuiverSlt {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let results = self
            .db
            .session
            .run_script(sql)
            .await
            .map_err(|e| SqlError(crate::message(&e)))?;
        let batches = results.into_iter().last().unwrap_or_default();
        let Some(first) = batches.first() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        if first.num_columns() == 0 {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = vec![DefaultColumnType::Any; first.num_columns()];
        let is_explain = first.schema().column_with_name("plan_type").is_some()
            && first.schema().column_with_name("plan").is_some();
        let rows = format_rows(&batches);
        let sized: Vec<bool> = first
            .schema()
            .fields()
            .iter()
            .map(|f| f.name() == SIZE_COLUMN)
            .collect();
        let rows = if is_explain {
            explain_rows(rows)
        } else {
            rows.into_iter().map(|row| mask_row(row, &sized)).collect()
        };
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "quiver"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// Lays out `EXPLAIN` output as DataFusion's own SQL logic tests do: the plan type on its own
/// line, then numbered plan lines with indentation shown as `-`; storage paths are masked.
fn explain_rows(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for row in rows {
        let [plan_type, plan] = row.as_slice() else {
            out.push(row);
            continue;
        };
        out.push(vec![plan_type.clone()]);
        for (i, line) in plan.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let indent = line.len() - line.trim_start().len();
            let text = mask_uri(line.trim_start());
            out.push(vec![format!("{:02}){}{}", i + 1, "-".repeat(indent), text)]);
        }
    }
    out
}

/// A column (or, in a `name, value` listing, a row) of storage sizes: they depend on Lance's
/// manifests, whose encoded timestamps vary in length from run to run.
const SIZE_COLUMN: &str = "bytes";

/// Masks what differs from run to run in a result row: sizes (`<bytes>`), and see
/// [`mask_volatile`].
fn mask_row(row: Vec<String>, sized: &[bool]) -> Vec<String> {
    let listing_size = row.len() == 2 && row[0] == SIZE_COLUMN;
    row.iter()
        .enumerate()
        .map(|(i, cell)| {
            if sized.get(i).copied().unwrap_or(false) || (listing_size && i == 1) {
                "<bytes>".to_string()
            } else {
                mask_volatile(cell)
            }
        })
        .collect()
}

/// Masks what differs from run to run in a result cell: generated ids (32 hex digits) become
/// `<id>`, and a cell that is a timestamp becomes `<time>`.
fn mask_volatile(cell: &str) -> String {
    if chrono::DateTime::parse_from_rfc3339(cell).is_ok()
        || chrono::NaiveDateTime::parse_from_str(cell, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
    {
        return "<time>".to_string();
    }
    let mut out = String::with_capacity(cell.len());
    let mut run = String::new();
    for c in cell.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() == 32 { "<id>" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// Replaces the collection id in `uri=collections/<id>/...` (a plan's path of a collection,
/// relative to the data root) by `<id>`, so that plans compare across runs.
fn mask_uri(line: &str) -> String {
    match line.find("uri=collections/") {
        Some(start) => {
            let id_start = start + "uri=collections/".len();
            let rest = &line[id_start..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!("{}<id>{}", &line[..id_start], &rest[end..])
        }
        None => line.to_string(),
    }
}

/// Runs one `.slt` file; returns the runner's error text on failure.
///
/// With `complete`, rewrites the file's expected results with the actual ones instead (review
/// the diff before committing it).
pub async fn run_file(path: &Path, complete: bool) -> Result<(), String> {
    let mut runner = sqllogictest::Runner::new(|| async { Ok(QuiverSlt::new().await) });
    if complete {
        return runner
            .update_test_file(
                path,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    runner
        .run_file_async(path)
        .await
        .map_err(|e| format!("{}: {}", path.display(), e.display(true)))
}
