//! Helpers for Quiver's end-to-end tests: throw-away data roots, sessions over them, result
//! formatting, and the SQL logic test driver.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use quiver_catalog::fault::FaultHooks;
use quiver_catalog::location::DataRoot;
use quiver_catalog::Catalog;
use quiver_planner::{user_message, QuiverSession};

pub mod npy;
pub mod slt;

/// The `tests` package's directory, as `cargo test` gives it to the running tests. Read at run
/// time, not compiled in: cargo does not rebuild a test binary when the checkout moves, and a
/// path compiled in would point into the old one.
pub fn package_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A session over a fresh temporary data root, deleted on drop.
pub struct TestDb {
    /// The data root's directory.
    pub dir: tempfile::TempDir,
    /// The session.
    pub session: QuiverSession,
    /// Fault hooks routed through every store operation.
    pub hooks: FaultHooks,
}

impl TestDb {
    /// A new, empty data root.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let hooks = FaultHooks::default();
        let session = open_session(&dir.path().to_string_lossy(), hooks.clone()).await;
        Self {
            dir,
            session,
            hooks,
        }
    }

    /// A new, empty data root opened as in production: no fault hooks, Lance writing local
    /// files directly (the SQL logic tests run this way).
    pub async fn without_faults() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = DataRoot::open(&dir.path().to_string_lossy())
            .await
            .expect("data root");
        let catalog = Catalog::open(root).await.expect("catalog");
        Self {
            dir,
            session: QuiverSession::new(Arc::new(catalog)),
            hooks: FaultHooks::default(),
        }
    }

    /// Reopens the data root in a new catalog and session, as a restarted process would.
    pub async fn restart(&mut self) {
        self.hooks = FaultHooks::default();
        self.session = open_session(&self.dir.path().to_string_lossy(), self.hooks.clone()).await;
    }

    /// Runs a script and returns the last statement's batches; panics on error.
    pub async fn sql(&self, sql: &str) -> Vec<RecordBatch> {
        match self.session.run_script(sql).await {
            Ok(mut results) => results.pop().unwrap_or_default(),
            Err(e) => panic!("{sql}: {}", user_message(&e)),
        }
    }

    /// Runs a script that must fail and returns the user-facing message.
    pub async fn error(&self, sql: &str) -> String {
        match self.session.run_script(sql).await {
            Ok(_) => panic!("expected an error from: {sql}"),
            Err(e) => user_message(&e),
        }
    }

    /// Runs a query and returns its rows as formatted strings.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        format_rows(&self.sql(sql).await)
    }

    /// The single value of a one-row, one-column query, formatted.
    pub async fn value(&self, sql: &str) -> String {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }
}

/// Opens a catalog and session at `dir`, with `hooks` on every store operation.
pub async fn open_session(dir: &str, hooks: FaultHooks) -> QuiverSession {
    let root = DataRoot::open_with_faults(dir, hooks)
        .await
        .expect("data root");
    let catalog = Catalog::open(root).await.expect("catalog");
    QuiverSession::new(Arc::new(catalog))
}

/// Formats one value for comparison in tests: floats to 4 decimals (so SIMD summation order does
/// not matter), lists as `[a, b]`, NULL as `NULL`, empty strings as `(empty)`.
pub fn format_value(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return "NULL".to_string();
    }
    match array.data_type() {
        DataType::Float32 => {
            format_float(f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => format_float(array.as_primitive::<Float64Type>().value(row)),
        DataType::FixedSizeList(_, _) => {
            let list = array.as_fixed_size_list().value(row);
            format_list(&list)
        }
        DataType::List(_) => format_list(&array.as_list::<i32>().value(row)),
        _ => {
            let options = FormatOptions::default().with_null("NULL");
            let s = ArrayFormatter::try_new(array.as_ref(), &options)
                .map(|f| f.value(row).to_string())
                .unwrap_or_else(|e| format!("<{e}>"));
            if s.is_empty() {
                "(empty)".to_string()
            } else {
                s
            }
        }
    }
}

fn format_list(values: &ArrayRef) -> String {
    let items: Vec<String> = (0..values.len()).map(|i| format_value(values, i)).collect();
    format!("[{}]", items.join(", "))
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Formats every row of `batches`.
pub fn format_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            out.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| format_value(c, row))
                    .collect(),
            );
        }
    }
    out
}

/// The user-facing message of a DataFusion error.
pub fn message(e: &DataFusionError) -> String {
    user_message(e)
}
