//! Scalar indices: filters are evaluated through them (as Lance's plan in `EXPLAIN` shows), and
//! snapshots and every kind of restore keep them.

use quiver_catalog::JobState;
use quiver_tests::TestDb;

/// The text of `EXPLAIN sql`.
async fn explained(db: &TestDb, sql: &str) -> String {
    db.rows(&format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether Lance's scan in `sql`'s plan evaluates its filter through a scalar index.
async fn uses_scalar_index(db: &TestDb, sql: &str) -> bool {
    explained(db, sql).await.contains("ScalarIndexQuery")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_use_scalar_indices_and_restores_keep_them() {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, category VARCHAR, year BIGINT, embedding VECTOR(2));
         INSERT INTO docs SELECT value, CASE WHEN value % 2 = 0 THEN 'even' ELSE 'odd' END,
           2000 + value % 10, make_array(value % 10, value / 10) FROM generate_series(1, 300);",
    )
    .await;
    let filtered = |table: &str| {
        format!("SELECT count(*) FROM {table} WHERE category = 'even' AND year < 2004")
    };
    assert!(!uses_scalar_index(&db, &filtered("docs")).await);
    db.sql(
        "CREATE INDEX docs_category ON docs USING BITMAP (category);
         CREATE INDEX docs_year ON docs USING BTREE (year);
         CREATE SNAPSHOT nightly ON docs;",
    )
    .await;
    assert!(uses_scalar_index(&db, &filtered("docs")).await);
    let count = db.value(&filtered("docs")).await;
    assert_eq!(count, "60");
    for (target, mode) in [("docs_copy", "copy"), ("docs_zero_copy", "zero_copy")] {
        let sql = format!("RESTORE SNAPSHOT nightly ON docs TO {target} WITH (mode = '{mode}')");
        let id: u64 = db.rows(&sql).await[0][0].parse().unwrap();
        let job = db.session.scheduler().wait(id).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
        let indexes: Vec<(String, String)> = db
            .rows(&format!("SHOW INDEXES FROM {target}"))
            .await
            .into_iter()
            .map(|r| (r[1].clone(), r[3].clone()))
            .collect();
        assert_eq!(
            indexes,
            [
                ("docs_category".to_string(), "BITMAP".to_string()),
                ("docs_year".to_string(), "BTREE".to_string())
            ]
        );
        assert!(uses_scalar_index(&db, &filtered(target)).await, "{target}");
        assert_eq!(db.value(&filtered(target)).await, count, "{target}");
    }
    // Rolled back in place to a version without them, the collection has none.
    db.sql("DROP INDEX docs_year ON docs; DROP INDEX docs_category ON docs")
        .await;
    assert!(db.rows("SHOW INDEXES FROM docs").await.is_empty());
    let id: u64 = db.rows("RESTORE TABLE docs TO SNAPSHOT nightly").await[0][0]
        .parse()
        .unwrap();
    let job = db.session.scheduler().wait(id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(db.rows("SHOW INDEXES FROM docs").await.len(), 2);
    assert!(uses_scalar_index(&db, &filtered("docs")).await);
}
