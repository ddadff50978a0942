//! The `quiver sql` command: run statements against an embedded data root or a server
//! (`--connect`) and print aligned tables, or open an interactive shell with history.
//!
//! Invariant: both backends print a statement's result through [`format_result`] from its
//! schema and batches, so the output is the same whether the data is local or remote.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::error::{DataFusionError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quiver_catalog::location::DataRoot;
use quiver_catalog::Catalog;
use quiver_planner::QuiverSession;
use rustyline::error::ReadlineError;

use crate::cli::client::{split_statements, ClientError, RemoteClient};
use crate::cli::vectors::{abbreviate_vectors, DEFAULT_VECTOR_VALUES};

/// Opens the catalog at `data` and a session over it.
pub async fn open_session(data: &str) -> Result<QuiverSession> {
    let root = DataRoot::open(data)
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    let catalog = Catalog::open(root)
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    if catalog.created() {
        eprintln!("{}", new_root_notice(&catalog));
    }
    Ok(QuiverSession::new(Arc::new(catalog))
        .with_progress(Arc::new(crate::cli::progress::ProgressBars::default())))
}

/// What the command line says when it made a new data root: a `--data` with a typo otherwise
/// looks like an empty database.
pub fn new_root_notice(catalog: &Catalog) -> String {
    format!(
        "quiver: created a new data root at {} (to open an existing one, check --data or QUIVER_DATA)",
        catalog.root().display()
    )
}

/// How `quiver sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrintOptions {
    /// How many values of each vector to print (0: all).
    pub vector_values: usize,
    /// How many rows of a result to print (0: all); the row count says how many were left out.
    pub max_rows: usize,
}

impl Default for PrintOptions {
    fn default() -> Self {
        Self {
            vector_values: DEFAULT_VECTOR_VALUES,
            max_rows: 0,
        }
    }
}

/// How many rows the shell prints of a result when its output is a terminal, unless told.
pub const TERMINAL_MAX_ROWS: usize = 1000;

/// Formats one statement's result as the CLI prints it: `OK` for a result without columns,
/// otherwise a table of its first `options.max_rows` rows, vectors abbreviated, and its row
/// count.
pub fn format_result(
    schema: &Schema,
    batches: &[RecordBatch],
    options: PrintOptions,
) -> Result<String, ArrowError> {
    if schema.fields().is_empty() {
        return Ok("OK".to_string());
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let shown_rows = match options.max_rows {
        0 => rows,
        max => rows.min(max),
    };
    let (schema, batches) = abbreviate_vectors(
        schema,
        &first_rows(batches, shown_rows),
        options.vector_values,
    )?;
    let table = pretty_format_batches_with_schema(schema, &batches)?.to_string();
    let noun = if rows == 1 { "row" } else { "rows" };
    if shown_rows < rows {
        return Ok(format!(
            "{table}\n({rows} {noun}, the first {shown_rows} shown; --max-rows 0 shows all)"
        ));
    }
    Ok(format!("{table}\n({rows} {noun})"))
}

/// The first `n` rows of `batches`.
fn first_rows(batches: &[RecordBatch], n: usize) -> Vec<RecordBatch> {
    let mut left = n;
    let mut out = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = batch.num_rows().min(left);
        out.push(batch.slice(0, take));
        left -= take;
    }
    out
}

/// Where `quiver sql` runs statements.
#[derive(Debug)]
pub enum Backend {
    /// In this process, on a data root.
    Embedded(QuiverSession),
    /// On a server, over Flight SQL.
    Remote(Box<RemoteClient>),
}

/// Why `quiver sql` failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A statement failed in the embedded engine.
    #[error("{}", quiver_planner::user_message(.0))]
    Sql(#[from] DataFusionError),
    /// The server refused or failed.
    #[error(transparent)]
    Remote(#[from] ClientError),
    /// A result could not be formatted.
    #[error("formatting the result failed: {0}")]
    Format(#[from] ArrowError),
    /// The terminal failed.
    #[error("terminal error: {0}")]
    Terminal(String),
    /// Standard output could not be written.
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// Whether the output was closed by its reader (`quiver sql ... | head`): the end of the
    /// run, not a failure.
    pub fn is_closed_output(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Writes `text` and a newline to standard output, failing (rather than panicking, as
/// `println!` does) where the reader has gone.
fn print_out(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

impl Backend {
    /// Where statements run, for the shell's banner.
    fn location(&self) -> String {
        match self {
            Backend::Embedded(session) => session.catalog().root().display().to_string(),
            Backend::Remote(client) => client.url().to_string(),
        }
    }

    /// Runs one statement and returns its result.
    async fn run_one(&mut self, sql: &str) -> Result<(Schema, Vec<RecordBatch>), CliError> {
        match self {
            Backend::Embedded(session) => {
                let df = session.sql(sql).await?;
                let schema = df.schema().as_arrow().clone();
                Ok((schema, df.collect().await?))
            }
            Backend::Remote(client) => {
                let (schema, batches) = client.run(sql).await?;
                Ok((schema.as_ref().clone(), batches))
            }
        }
    }

    /// Runs a script and prints each statement's result as `print` says; stops at the first
    /// error. A statement that starts a job (`RESTORE`) is followed with a progress bar until
    /// the job finishes.
    pub async fn run_and_print(&mut self, sql: &str, print: PrintOptions) -> Result<(), CliError> {
        let statements = match self {
            Backend::Embedded(_) => {
                quiver_planner::statements::parse_statements(sql)?;
                split_statements(sql)?
            }
            Backend::Remote(_) => split_statements(sql)?,
        };
        for statement in statements {
            let (schema, batches) = self.run_one(&statement).await?;
            print_out(&format_result(&schema, &batches, print)?)?;
            if let Some(id) = started_job(&schema, &batches) {
                self.follow(id).await?;
            }
        }
        Ok(())
    }

    /// Polls job `id` until it finishes, drawing its progress; prints how it ended.
    async fn follow(&mut self, id: u64) -> Result<(), CliError> {
        let bar = ProgressBar::new(100).with_style(
            ProgressStyle::with_template("job {prefix} {msg:>9} [{bar:40}] {pos}%")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(id.to_string());
        let query = format!("SELECT state, progress, error FROM quiver.jobs WHERE id = {id}");
        loop {
            let (_, batches) = self.run_one(&query).await?;
            let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
                bar.finish_and_clear();
                return Ok(());
            };
            let unexpected = || {
                CliError::Format(ArrowError::SchemaError(format!(
                    "the answer about job {id} has unexpected column types"
                )))
            };
            let (Some(states), Some(progress), Some(errors)) = (
                batch.column(0).as_string_opt::<i32>(),
                batch.column(1).as_primitive_opt::<UInt64Type>(),
                batch.column(2).as_string_opt::<i32>(),
            ) else {
                bar.finish_and_clear();
                return Err(unexpected());
            };
            let state = states.value(0).to_string();
            let progress = progress.value(0);
            bar.set_message(state.clone());
            bar.set_position(progress);
            if matches!(state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED") {
                bar.finish_and_clear();
                let reason = if errors.is_valid(0) {
                    format!(": {}", errors.value(0))
                } else {
                    String::new()
                };
                print_out(&format!("job {id} {state}{reason}"))?;
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// The id of the job a result announces (one row with a `job_id` column), if any.
fn started_job(schema: &Schema, batches: &[RecordBatch]) -> Option<u64> {
    let index = schema.index_of("job_id").ok()?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows != 1 || schema.fields().len() != 4 {
        return None;
    }
    let batch = batches.iter().find(|b| b.num_rows() == 1)?;
    batch
        .column(index)
        .as_primitive_opt::<UInt64Type>()
        .map(|a| a.value(0))
}

/// Whether `buffer` holds a complete statement (ends with `;` outside quotes).
fn is_complete(buffer: &str) -> bool {
    let mut in_single = false;
    let mut in_double = false;
    let mut last_significant = None;
    for c in buffer.chars() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            _ => {}
        }
        if !c.is_whitespace() {
            last_significant = Some((c, in_single || in_double));
        }
    }
    matches!(last_significant, Some((';', false)))
}

/// The shell: statements end with `;`, history is kept in `~/.quiver_history`. Fed a script
/// (standard input not a terminal), it prints no banner and stops at the first error, which
/// it returns (psql's `ON_ERROR_STOP`); at a terminal it reports an error and reads on.
pub async fn shell(backend: &mut Backend, print: PrintOptions) -> Result<(), CliError> {
    use std::io::IsTerminal;
    let interactive = std::io::stdin().is_terminal();
    let mut editor =
        rustyline::DefaultEditor::new().map_err(|e| CliError::Terminal(e.to_string()))?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".quiver_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    if interactive {
        print_out(&format!(
            "Quiver SQL shell on {} — end statements with ';', exit with \\q or Ctrl-D.",
            backend.location()
        ))?;
    }
    let mut buffer = String::new();
    let mut failed = None;
    loop {
        let prompt = if buffer.is_empty() {
            "quiver> "
        } else {
            "   ...> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if buffer.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if is_complete(&buffer) {
                    let sql = std::mem::take(&mut buffer);
                    let _ = editor.add_history_entry(sql.trim());
                    match backend.run_and_print(&sql, print).await {
                        Err(e) if e.is_closed_output() || !interactive => {
                            failed = Some(e);
                            break;
                        }
                        Err(e) => eprintln!("ERROR: {e}"),
                        Ok(()) => {}
                    }
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("ERROR: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_print_as_tables_or_ok() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{DataType, Field};
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
        let print = PrintOptions::default();
        assert_eq!(
            format_result(&Schema::empty(), &[], print).expect("ok"),
            "OK"
        );
        let empty = format_result(&schema, &[], print).expect("empty");
        assert!(
            empty.contains("| n |") && empty.ends_with("(0 rows)"),
            "{empty}"
        );
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(Int64Array::from(vec![7]))],
        )
        .expect("batch");
        let one = format_result(&schema, std::slice::from_ref(&batch), print).expect("one");
        assert!(one.contains("| 7 |") && one.ends_with("(1 row)"), "{one}");
        let three = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .expect("batch");
        let capped = PrintOptions {
            max_rows: 2,
            ..print
        };
        let two = format_result(&schema, &[batch, three], capped).expect("capped");
        assert!(
            two.contains("| 7 |") && two.contains("| 1 |") && !two.contains("| 2 |"),
            "{two}"
        );
        assert!(
            two.ends_with("(4 rows, the first 2 shown; --max-rows 0 shows all)"),
            "{two}"
        );
    }

    #[test]
    fn statements_complete_at_a_semicolon_outside_quotes() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1;  \n"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1"));
        assert!(is_complete("SELECT ';';"));
    }
}
