//! Collections through SQL: persistence across restarts and bad input leaving data unchanged.

use quiver_catalog::fault::FaultHooks;
use quiver_tests::{open_session, TestDb};

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
async fn the_next_statement_sees_what_another_process_committed() {
    let db = TestDb::new().await;
    // A second catalog over the same data root, as another server process would open it.
    let other = open_session(&db.dir.path().to_string_lossy(), FaultHooks::default()).await;
    db.sql("CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR(2))")
        .await;
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "0");
    other
        .run_script("INSERT INTO docs VALUES (1, [1, 2])")
        .await
        .expect("insert");
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "1");
    other
        .run_script("CREATE SNAPSHOT s1 ON docs")
        .await
        .expect("snapshot");
    assert_eq!(
        db.value("SELECT count(*) FROM snapshot('docs', 's1')")
            .await,
        "1"
    );
    other
        .run_script(
            "DROP TABLE docs CASCADE;
             CREATE TABLE docs (id BIGINT NOT NULL, label TEXT)",
        )
        .await
        .expect("replace");
    // The collection the name now refers to, not the one this process last read.
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "0");
    let err = db
        .error("SELECT count(*) FROM snapshot('docs', 's1')")
        .await;
    assert!(err.contains("s1"), "{err}");
    assert_eq!(
        db.rows("SELECT column_name FROM information_schema.columns WHERE table_name = 'docs' ORDER BY ordinal_position")
            .await,
        vec![vec!["id"], vec!["label"]]
    );
    other.run_script("DROP TABLE docs").await.expect("drop");
    let err = db.error("SELECT count(*) FROM docs").await;
    assert!(err.contains("docs"), "{err}");
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_write_leaves_the_last_committed_state() {
    use object_store::path::Path;
    use quiver_catalog::fault::StoreOp;
    use std::sync::Arc;

    const KEYED: &str = "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, embedding VECTOR(2))";
    const KEYLESS: &str = "CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR(2))";
    const UPDATE: &str = "UPDATE docs SET embedding = [0, 0] WHERE id = 1";
    for (what, fails, table, write) in [
        (
            "data file",
            "/data/",
            KEYED,
            "INSERT INTO docs VALUES (3, [5, 6])",
        ),
        (
            "version manifest",
            "/_versions/",
            KEYED,
            "INSERT INTO docs VALUES (3, [5, 6])",
        ),
        (
            "deletion file",
            "/_deletions/",
            KEYED,
            "DELETE FROM docs WHERE id = 1",
        ),
        (
            "version manifest of a delete",
            "/_versions/",
            KEYED,
            "DELETE FROM docs WHERE id = 1",
        ),
        ("data file of an upsert", "/data/", KEYED, UPDATE),
        ("data file of a rewrite", "/data/", KEYLESS, UPDATE),
        (
            "deletion file of a rewrite",
            "/_deletions/",
            KEYLESS,
            UPDATE,
        ),
        (
            "version manifest of a rewrite",
            "/_versions/",
            KEYLESS,
            UPDATE,
        ),
    ] {
        let mut db = TestDb::new().await;
        db.sql(&format!(
            "{table}; INSERT INTO docs VALUES (1, [1, 2]), (2, [3, 4])"
        ))
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
            db.rows("SELECT id, embedding FROM docs ORDER BY id").await,
            vec![vec!["1", "[1, 2]"], vec!["2", "[3, 4]"]],
            "{what}"
        );
        // The collection takes writes again.
        db.sql("INSERT INTO docs VALUES (3, [5, 6])").await;
        assert_eq!(db.value("SELECT count(*) FROM docs").await, "3", "{what}");
    }
}

#[tokio::test]
async fn concurrent_updates_of_a_keyless_collection_lose_no_write() {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE hits (id BIGINT NOT NULL, n BIGINT NOT NULL, v VECTOR(2));
         INSERT INTO hits VALUES (1, 0, [0, 0]), (2, 0, [0, 0])",
    )
    .await;
    // Six increments, three per row, all at once: each reads a version another may have
    // rewritten before it commits.
    let updates: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "UPDATE hits SET n = n + 1, v = [n + 1, 0] WHERE id = {}",
                1 + i % 2
            )
        })
        .collect();
    let results =
        futures::future::join_all(updates.iter().map(|sql| db.session.run_script(sql))).await;
    for (sql, result) in updates.iter().zip(results) {
        if let Err(e) = result {
            panic!("{sql}: {}", quiver_tests::message(&e));
        }
    }
    assert_eq!(
        db.rows("SELECT id, n, v FROM hits ORDER BY id").await,
        vec![vec!["1", "3", "[3, 0]"], vec!["2", "3", "[3, 0]"]]
    );
}

#[tokio::test]
async fn an_update_of_a_keyless_collection_makes_one_version_or_none() {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE t (id BIGINT NOT NULL, v VECTOR(2));
         INSERT INTO t VALUES (1, [1, 2]), (2, [3, 4])",
    )
    .await;
    let version = || async {
        let catalog = db.session.catalog();
        let record = catalog.collection("default", "t").await.unwrap();
        catalog
            .open_dataset(&record, None)
            .await
            .unwrap()
            .version()
            .version
    };
    let before = version().await;
    assert_eq!(db.value("UPDATE t SET v = [0, 0] WHERE id = 7").await, "0");
    assert_eq!(version().await, before, "an update that matches nothing");
    assert_eq!(db.value("UPDATE t SET v = [0, 0] WHERE id <= 2").await, "2");
    assert_eq!(version().await, before + 1, "an update of two rows");
}

#[tokio::test]
async fn errors_name_files_relative_to_the_data_root_without_source_locations() {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR(2));
         INSERT INTO docs VALUES (1, [1, 2])",
    )
    .await;
    // A data file lost under the collection (a damaged root).
    let data = db.dir.path().join("collections");
    let collection = std::fs::read_dir(&data)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for file in std::fs::read_dir(collection.join("data")).unwrap() {
        std::fs::remove_file(file.unwrap().path()).unwrap();
    }
    let err = db.error("SELECT * FROM docs").await;
    let root = db
        .dir
        .path()
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string();
    assert!(!err.contains(&root), "{err}");
    assert!(!err.contains(".rs:"), "{err}");
    assert!(err.contains("collections/"), "{err}");
}
