//! The `quiver sql` command: run statements against an embedded data root and print aligned
//! tables, or open an interactive shell with history.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::Result;
use quiver_catalog::location::DataRoot;
use quiver_catalog::Catalog;
use quiver_planner::QuiverSession;
use rustyline::error::ReadlineError;

/// Opens the catalog at `data` and a session over it.
pub async fn open_session(data: &str) -> Result<QuiverSession> {
    let root = DataRoot::open(data)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    let catalog = Catalog::open(root)
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    Ok(QuiverSession::new(Arc::new(catalog)))
}

/// Formats one statement's result as the CLI prints it.
pub fn format_result(batches: &[RecordBatch]) -> Result<String> {
    let has_columns = batches.iter().any(|b| b.num_columns() > 0);
    if !has_columns {
        return Ok("OK".to_string());
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let table = pretty_format_batches(batches)?.to_string();
    let noun = if rows == 1 { "row" } else { "rows" };
    Ok(format!("{table}\n({rows} {noun})"))
}

/// Runs a script and prints each statement's result; stops at the first error.
pub async fn run_and_print(session: &QuiverSession, sql: &str) -> Result<()> {
    for statement in quiver_planner::statement::parse_statements(sql)? {
        let batches = session.statement(statement).await?.collect().await?;
        println!("{}", format_result(&batches)?);
    }
    Ok(())
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

/// The interactive shell: statements end with `;`, history is kept in `~/.quiver_history`.
pub async fn shell(session: &QuiverSession) -> Result<()> {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".quiver_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "Quiver SQL shell on {} — end statements with ';', exit with \\q or Ctrl-D.",
        session.catalog().root().display()
    );
    let mut buffer = String::new();
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
                    if let Err(e) = run_and_print(session, &sql).await {
                        eprintln!("ERROR: {}", quiver_planner::user_message(&e));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_complete_at_a_semicolon_outside_quotes() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1;  \n"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1"));
        assert!(is_complete("SELECT ';';"));
    }
}
