//! Primary keys under concurrency: of concurrent writers of one key, in one process or over one
//! data root from several catalogs (as several processes or servers open it), exactly one
//! inserts it.

use std::sync::Arc;

use quiver_catalog::fault::FaultHooks;
use quiver_planner::{user_message, QuiverSession};
use quiver_tests::{open_session, TestDb};
use tokio::sync::Barrier;

/// Writers per key: half share the test's catalog, half open catalogs of their own.
const WRITERS: usize = 6;
/// Keys raced for, one round each.
const ROUNDS: i64 = 4;

/// The sessions of one round: three on the test's catalog, three each on a catalog of its own over
/// the same data root.
async fn writers(db: &TestDb) -> Vec<QuiverSession> {
    let root = db.dir.path().to_string_lossy().to_string();
    let mut sessions = Vec::new();
    for i in 0..WRITERS {
        if i % 2 == 0 {
            sessions.push(QuiverSession::new(db.session.catalog().clone()));
        } else {
            sessions.push(open_session(&root, FaultHooks::default()).await);
        }
    }
    sessions
}

/// Runs `statement(i)` on every session at once; returns each result (`Err` with the message).
async fn race(
    sessions: Vec<QuiverSession>,
    statement: impl Fn(usize) -> String,
) -> Vec<Result<(), String>> {
    let barrier = Arc::new(Barrier::new(sessions.len()));
    let mut tasks = Vec::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let barrier = barrier.clone();
        let sql = statement(i);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            session
                .run_script(&sql)
                .await
                .map(|_| ())
                .map_err(|e| user_message(&e))
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("writer task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_of_one_key_have_exactly_one_winner() {
    let db = TestDb::new().await;
    db.sql("CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR)")
        .await;
    for key in 1..=ROUNDS {
        let results = race(writers(&db).await, |i| {
            format!("INSERT INTO t VALUES ({key}, 'writer {i}')")
        })
        .await;
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "key {key}: {results:?}");
        for error in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                error.contains("duplicate primary key"),
                "key {key}: {error}"
            );
        }
        assert_eq!(
            db.value(&format!("SELECT count(*) FROM t WHERE id = {key}"))
                .await,
            "1"
        );
    }
    assert_eq!(db.value("SELECT count(*) FROM t").await, ROUNDS.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replaces_of_one_key_leave_one_row() {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR);
         INSERT INTO t VALUES (1, 'before')",
    )
    .await;
    for key in 1..=ROUNDS {
        // Key 1 exists (each writer updates it); the others are new (each writer inserts it).
        let results = race(writers(&db).await, |i| {
            format!("REPLACE INTO t VALUES ({key}, 'writer {i}')")
        })
        .await;
        assert!(results.iter().all(Result::is_ok), "key {key}: {results:?}");
        let rows = db
            .rows(&format!("SELECT label FROM t WHERE id = {key}"))
            .await;
        assert_eq!(rows.len(), 1, "key {key}: {rows:?}");
        assert!(rows[0][0].starts_with("writer "), "key {key}: {rows:?}");
    }
    assert_eq!(db.value("SELECT count(*) FROM t").await, ROUNDS.to_string());
}
