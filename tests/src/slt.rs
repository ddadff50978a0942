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
        Ok(DBOutput::Rows {
            types,
            rows: if is_explain { explain_rows(rows) } else { rows },
        })
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

/// Replaces `uri=<path>` (up to the next comma) by `uri=<uri>`.
fn mask_uri(line: &str) -> String {
    match line.find("uri=") {
        Some(start) => {
            let rest = &line[start + 4..];
            let end = rest.find(',').unwrap_or(rest.len());
            format!("{}uri=<uri>{}", &line[..start], &rest[end..])
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
