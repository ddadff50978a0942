//! Runs every SQL logic test file under `tests/sql/`, each against a fresh data root.
//!
//! `SLT=<part of a file name>` runs only matching files; `SLT_COMPLETE=1` rewrites the expected
//! results with the actual ones (DataFusion's `--complete`).

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_tests() {
    let dir = quiver_tests::package_dir().join("sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/sql")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let filter = std::env::var("SLT").ok();
    let complete = std::env::var("SLT_COMPLETE").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for file in files {
        if let Some(f) = &filter {
            if !file.to_string_lossy().contains(f.as_str()) {
                continue;
            }
        }
        if let Err(e) = quiver_tests::slt::run_file(&file, complete).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
