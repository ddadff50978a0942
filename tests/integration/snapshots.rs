//! Snapshots the hard way: crashes at every step of create and drop, concurrent creates of one
//! name, damaged manifests, and Lance's own version cleanup.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use object_store::path::Path;
use quiver_catalog::fault::StoreOp;
use quiver_catalog::snapshot::{snapshot_dir, tag_name};
use quiver_catalog::SnapshotState;
use quiver_tests::TestDb;

async fn docs() -> TestDb {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, embedding VECTOR(2));
         INSERT INTO docs VALUES (1, [0, 0]), (2, [1, 0]);
         CREATE INDEX e ON docs USING IVF_FLAT (embedding) WITH (num_partitions = 1);
         DELETE FROM docs WHERE id = 2;
         INSERT INTO docs VALUES (3, [3, 3])",
    )
    .await;
    db
}

/// Makes the `nth` (1-based) write whose path contains `trigger`, and every write after it,
/// fail: the process "dies" at that point and can clean nothing up.
fn crash_at_nth(db: &TestDb, trigger: &'static str, nth: usize) -> Arc<AtomicBool> {
    let crashed = Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    let seen = Arc::new(AtomicUsize::new(0));
    db.hooks.set(Arc::new(move |op: StoreOp, path: &Path| {
        let write = !matches!(op, StoreOp::Get | StoreOp::List);
        let hit = write
            && path.as_ref().contains(trigger)
            && seen.fetch_add(1, Ordering::SeqCst) + 1 >= nth;
        if write && (flag.load(Ordering::SeqCst) || hit) {
            flag.store(true, Ordering::SeqCst);
            return Err("process crashed".to_string());
        }
        Ok(())
    }));
    crashed
}

fn dir_exists(db: &TestDb, relative: &str) -> bool {
    let path = db.dir.path().join(relative);
    path.exists()
        && std::fs::read_dir(&path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
}

#[tokio::test]
async fn a_crash_at_any_step_of_create_leaves_no_visible_snapshot_and_no_leak() {
    // The steps of create, in order: the PENDING commit, the tag, the manifest, the metadata,
    // the COMMITTED commit.
    for (step, trigger, nth) in [
        (0, "_catalog/log", 1),
        (1, "_refs/tags", 1),
        (2, "manifest.avro", 1),
        (3, "metadata.avro", 1),
        (4, "_catalog/log", 2),
    ] {
        let mut db = docs().await;
        let before = db.rows("SELECT id FROM docs ORDER BY id").await;
        let crashed = crash_at_nth(&db, trigger, nth);
        let err = db.error("CREATE SNAPSHOT nightly ON docs").await;
        assert!(crashed.load(Ordering::SeqCst), "step {step}: never reached");
        assert!(err.contains("process crashed"), "step {step}: {err}");

        db.restart().await;
        assert!(db.rows("SHOW SNAPSHOTS").await.is_empty(), "step {step}");
        assert_eq!(db.rows("SELECT id FROM docs ORDER BY id").await, before);
        let err = db.error("SELECT * FROM snapshot('docs', 'nightly')").await;
        assert!(err.contains("does not exist"), "step {step}: {err}");

        // Garbage collection clears what the crash left; the name is free again.
        let catalog = db.session.catalog().clone();
        for stale in catalog
            .stale_snapshots(chrono::Duration::zero())
            .await
            .unwrap()
        {
            assert_eq!(stale.state, SnapshotState::Pending);
            catalog.clear_stale_snapshot(&stale).await.unwrap();
            assert!(!dir_exists(
                &db,
                &snapshot_dir(&stale.collection_id, &stale.id)
            ));
            let record = catalog.collection("default", "docs").await.unwrap();
            let tag = db
                .dir
                .path()
                .join(&record.location)
                .join("_refs/tags")
                .join(format!("{}.json", tag_name(&stale.id)));
            assert!(!tag.exists(), "step {step}: tag left behind");
        }
        assert!(catalog.state().await.unwrap().snapshots.is_empty());
        db.sql("CREATE SNAPSHOT nightly ON docs").await;
        assert_eq!(
            db.rows("SELECT name FROM quiver.snapshots").await,
            vec![vec!["nightly"]]
        );
    }
}

#[tokio::test]
async fn a_failure_the_process_survives_is_undone_at_once() {
    let db = docs().await;
    db.hooks.set(Arc::new(|op: StoreOp, path: &Path| {
        if op == StoreOp::Put && path.as_ref().ends_with("metadata.avro") {
            return Err("disk full".to_string());
        }
        Ok(())
    }));
    let err = db.error("CREATE SNAPSHOT nightly ON docs").await;
    assert!(err.contains("disk full"), "{err}");
    db.hooks.clear();
    let state = db.session.catalog().state().await.unwrap();
    assert!(state.snapshots.is_empty(), "{:?}", state.snapshots);
    assert!(!dir_exists(&db, "snapshots"));
    db.sql("CREATE SNAPSHOT nightly ON docs").await;
}

#[tokio::test]
async fn a_crash_at_any_step_of_drop_leaves_the_catalog_consistent_and_gc_finishes_it() {
    // The steps of drop, in order: the DELETING commit, the manifest, the metadata, the tag,
    // the record's removal.
    for (step, trigger, nth) in [
        (0, "_catalog/log", 1),
        (1, "snapshots/", 1),
        (2, "snapshots/", 2),
        (3, "_refs/tags", 1),
        (4, "_catalog/log", 2),
    ] {
        let mut db = docs().await;
        db.sql("CREATE SNAPSHOT nightly ON docs").await;
        let at_snapshot = db
            .rows("SELECT id FROM snapshot('docs', 'nightly') ORDER BY id")
            .await;
        let crashed = crash_at_nth(&db, trigger, nth);
        let err = db.error("DROP SNAPSHOT nightly ON docs").await;
        assert!(crashed.load(Ordering::SeqCst), "step {step}: never reached");
        assert!(err.contains("process crashed"), "step {step}: {err}");
        db.restart().await;
        let catalog = db.session.catalog().clone();
        if step == 0 {
            // Nothing was committed: the snapshot is whole and usable.
            assert_eq!(
                db.rows("SELECT name FROM quiver.snapshots").await,
                vec![vec!["nightly"]]
            );
            assert_eq!(
                db.rows("SELECT id FROM snapshot('docs', 'nightly') ORDER BY id")
                    .await,
                at_snapshot
            );
            db.sql("DROP SNAPSHOT nightly ON docs").await;
        } else {
            // Marked DELETING: invisible, and garbage collection finishes the drop.
            assert!(db.rows("SHOW SNAPSHOTS").await.is_empty(), "step {step}");
            let stale = catalog
                .stale_snapshots(chrono::Duration::zero())
                .await
                .unwrap();
            assert_eq!(stale.len(), 1, "step {step}");
            assert_eq!(stale[0].state, SnapshotState::Deleting);
            catalog.clear_stale_snapshot(&stale[0]).await.unwrap();
        }
        assert!(
            catalog.state().await.unwrap().snapshots.is_empty(),
            "step {step}"
        );
        assert!(!dir_exists(&db, "snapshots"), "step {step}");
        let record = catalog.collection("default", "docs").await.unwrap();
        assert!(
            !dir_exists(&db, &format!("{}/_refs/tags", record.location)),
            "step {step}: tag left behind"
        );
        // The collection itself was never touched.
        assert_eq!(db.value("SELECT count(*) FROM docs").await, "2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_have_exactly_one_winner() {
    let db = docs().await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let session = db.session.clone();
            tokio::spawn(async move { session.sql("CREATE SNAPSHOT nightly ON docs").await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        db.rows("SELECT name FROM quiver.snapshots").await,
        vec![vec!["nightly"]]
    );
    assert_eq!(
        db.session.catalog().state().await.unwrap().snapshots.len(),
        1
    );
}

#[tokio::test]
async fn the_manifest_lists_exactly_the_files_the_version_reads() {
    let db = docs().await;
    db.sql("CREATE SNAPSHOT nightly ON docs").await;
    let catalog = db.session.catalog().clone();
    let (_, snapshot) = catalog
        .snapshot("default", "docs", "nightly")
        .await
        .unwrap();
    let files = catalog.snapshot_files(&snapshot).await.unwrap();
    let metadata = catalog.snapshot_metadata(&snapshot).await.unwrap();
    assert_eq!(metadata.files, files.len() as u64);
    assert_eq!(metadata.rows, 2);
    assert_eq!(metadata.indices.len(), 1);
    assert_eq!(metadata.primary_key, vec!["id".to_string()]);
    let kinds: std::collections::BTreeSet<_> = files.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec!["DATA", "DELETION", "INDEX", "VERSION_MANIFEST"]
    );
    for file in &files {
        let on_disk = std::fs::metadata(db.dir.path().join(&file.path)).unwrap();
        assert_eq!(on_disk.len(), file.size_bytes, "{}", file.path);
    }
    assert_eq!(
        metadata.bytes,
        files.iter().map(|f| f.size_bytes).sum::<u64>()
    );
}

#[tokio::test]
async fn a_missing_or_corrupt_manifest_is_named_and_the_collection_stays_usable() {
    let db = docs().await;
    db.sql("CREATE SNAPSHOT nightly ON docs").await;
    let catalog = db.session.catalog().clone();
    let (_, snapshot) = catalog
        .snapshot("default", "docs", "nightly")
        .await
        .unwrap();
    let metadata = db
        .dir
        .path()
        .join(snapshot_dir(&snapshot.collection_id, &snapshot.id))
        .join("metadata.avro");
    std::fs::write(&metadata, b"garbage").unwrap();
    let err = db.error("DESCRIBE SNAPSHOT nightly ON docs").await;
    assert!(
        err.starts_with("corrupt snapshot manifest 'snapshots/"),
        "{err}"
    );
    assert!(err.contains("metadata.avro"), "{err}");
    std::fs::remove_file(&metadata).unwrap();
    let err = db.error("DESCRIBE SNAPSHOT nightly ON docs").await;
    assert!(err.contains("metadata.avro' is missing"), "{err}");
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "2");
    assert_eq!(
        db.value("SELECT count(*) FROM snapshot('docs', 'nightly')")
            .await,
        "2"
    );
}

#[tokio::test]
async fn lance_version_cleanup_keeps_the_pinned_version() {
    let db = docs().await;
    db.sql("CREATE SNAPSHOT nightly ON docs").await;
    db.sql("INSERT INTO docs VALUES (10, [1, 1]); DELETE FROM docs WHERE id = 1")
        .await;
    let catalog = db.session.catalog().clone();
    let record = catalog.collection("default", "docs").await.unwrap();
    let dataset = catalog.open_dataset(&record, None).await.unwrap();
    let removed = dataset
        .cleanup_old_versions(chrono::Duration::zero(), Some(true), Some(false))
        .await
        .unwrap();
    assert!(removed.old_versions > 0, "{removed:?}");
    assert_eq!(
        db.rows("SELECT id FROM snapshot('docs', 'nightly') ORDER BY id")
            .await,
        vec![vec!["1"], vec!["3"]]
    );
    assert_eq!(
        db.rows("SELECT id FROM docs ORDER BY id").await,
        vec![vec!["3"], vec!["10"]]
    );
}
