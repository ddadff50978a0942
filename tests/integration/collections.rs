//! Collections through SQL: persistence across restarts and bad input leaving data unchanged.

use quiver_tests::TestDb;

#[tokio::test]
async fn collections_survive_a_restart() {
    let mut db = TestDb::new().await;
    db.sql(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, embedding VECTOR(2));
            INSERT INTO docs VALUES (1, [1, 2]), (2, [3, 4])",
    )
    .await;
    db.restart().await;
    assert_eq!(
        db.rows("SELECT id, embedding FROM docs ORDER BY id").await,
        vec![vec!["1", "[1, 2]"], vec!["2", "[3, 4]"]]
    );
    // The primary key is still enforced after the restart.
    let err = db.error("INSERT INTO docs VALUES (2, [0, 0])").await;
    assert!(err.contains("duplicate primary key"), "{err}");
}
