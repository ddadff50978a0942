//! Reads by primary key through the key index: `WHERE id = x` and `WHERE id IN (...)` on a
//! keyed collection search Lance's BTREE on the key instead of scanning, and stay exact for
//! rows written after the index was built or folded forward.

use quiver_catalog::key_index::{KeyIndexUpkeep, UNINDEXED_ROWS};
use quiver_catalog::DEFAULT_DATABASE;
use quiver_tests::TestDb;

/// The plan `EXPLAIN` prints for `sql`.
async fn explain(db: &TestDb, sql: &str) -> String {
    db.rows(&format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .map(|row| row.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Appends rows `from..=to` in one write.
async fn insert(db: &TestDb, from: u64, to: u64) {
    db.sql(&format!(
        "INSERT INTO t SELECT value, concat('row ', value) FROM generate_series({from}, {to})"
    ))
    .await;
}

#[tokio::test]
async fn reads_by_key_search_the_key_index_and_find_every_row() {
    let db = TestDb::new().await;
    db.sql("CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR)")
        .await;
    insert(&db, 1, 20_000).await;

    let point = "SELECT label FROM t WHERE id = 12345";
    let plan = explain(&db, point).await;
    assert!(plan.contains("ScalarIndexQuery"), "{plan}");
    assert_eq!(db.rows(point).await, [["row 12345"]]);
    let listed = "SELECT id FROM t WHERE id IN (3, 19999, 40000) ORDER BY id";
    assert!(
        explain(&db, listed).await.contains("ScalarIndexQuery"),
        "{}",
        explain(&db, listed).await
    );
    assert_eq!(db.rows(listed).await, [["3"], ["19999"]]);

    // Rows written after the index: found, through the index for the rows it covers and a scan
    // of the new fragment.
    insert(&db, 20_001, 20_010).await;
    assert_eq!(
        db.rows("SELECT label FROM t WHERE id = 20005").await,
        [["row 20005"]]
    );
    assert_eq!(
        db.rows("SELECT id FROM t WHERE id IN (7, 20010) ORDER BY id")
            .await,
        [["7"], ["20010"]]
    );
    // An updated and a deleted key.
    db.sql("UPDATE t SET label = 'changed' WHERE id = 12345; DELETE FROM t WHERE id = 3")
        .await;
    assert_eq!(db.rows(point).await, [["changed"]]);
    assert!(db.rows("SELECT id FROM t WHERE id = 3").await.is_empty());

    // Enough new rows fold into the index with the write that brings them.
    insert(&db, 20_011, 20_010 + UNINDEXED_ROWS + 1).await;
    let record = db
        .session
        .catalog()
        .collection(DEFAULT_DATABASE, "t")
        .await
        .expect("record");
    assert_eq!(
        db.session
            .catalog()
            .maintain_key_index(&record)
            .await
            .expect("upkeep"),
        KeyIndexUpkeep::Current,
        "the write folded its rows in already"
    );
    let last = 20_010 + UNINDEXED_ROWS + 1;
    assert_eq!(
        db.rows(&format!("SELECT label FROM t WHERE id = {last}"))
            .await,
        [[format!("row {last}")]]
    );
    assert_eq!(
        db.value("SELECT count(*) FROM t").await,
        (last - 1).to_string()
    );
}

#[tokio::test]
async fn collections_without_a_one_column_key_get_no_key_index() {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE plain (id BIGINT, label VARCHAR);
         INSERT INTO plain VALUES (1, 'a'), (2, 'b');
         CREATE TABLE pair (a BIGINT NOT NULL, b BIGINT NOT NULL, PRIMARY KEY (a, b));
         INSERT INTO pair VALUES (1, 1), (1, 2);",
    )
    .await;
    for (table, sql) in [
        ("plain", "SELECT label FROM plain WHERE id = 2"),
        ("pair", "SELECT b FROM pair WHERE a = 1 AND b = 2"),
    ] {
        let plan = explain(&db, sql).await;
        assert!(!plan.contains("ScalarIndexQuery"), "{table}: {plan}");
        assert_eq!(db.rows(sql).await.len(), 1, "{table}");
    }
}
