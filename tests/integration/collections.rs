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

#[tokio::test]
async fn a_crash_in_the_middle_of_a_write_leaves_the_last_committed_state() {
    use object_store::path::Path;
    use quiver_catalog::fault::StoreOp;
    use std::sync::Arc;

    for (what, fails, write) in [
        ("data file", "/data/", "INSERT INTO docs VALUES (3, [5, 6])"),
        (
            "version manifest",
            "/_versions/",
            "INSERT INTO docs VALUES (3, [5, 6])",
        ),
        (
            "deletion file",
            "/_deletions/",
            "DELETE FROM docs WHERE id = 1",
        ),
        (
            "version manifest of a delete",
            "/_versions/",
            "DELETE FROM docs WHERE id = 1",
        ),
    ] {
        let mut db = TestDb::new().await;
        db.sql(
            "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, embedding VECTOR(2));
             INSERT INTO docs VALUES (1, [1, 2]), (2, [3, 4])",
        )
        .await;
        let trigger = fails.to_string();
        db.hooks.set(Arc::new(move |op: StoreOp, path: &Path| {
            let write = matches!(
                op,
                StoreOp::Put | StoreOp::PutMultipart | StoreOp::Rename | StoreOp::Copy
            );
            if write && format!("/{path}").contains(&trigger) {
                return Err("process crashed".to_string());
            }
            Ok(())
        }));
        let err = match db.session.run_script(write).await {
            Ok(_) => panic!("{what}: the write did not fail"),
            Err(e) => quiver_tests::message(&e),
        };
        assert!(err.contains("crashed"), "{what}: {err}");
        db.restart().await;
        assert_eq!(
            db.rows("SELECT id FROM docs ORDER BY id").await,
            vec![vec!["1"], vec!["2"]],
            "{what}"
        );
        // The collection takes writes again.
        db.sql("INSERT INTO docs VALUES (3, [5, 6])").await;
        assert_eq!(db.value("SELECT count(*) FROM docs").await, "3", "{what}");
    }
}
