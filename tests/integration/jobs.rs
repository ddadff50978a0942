//! Restore and garbage collection jobs: results, states, crashes, cancellation, concurrency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use object_store::path::Path;
use quiver_catalog::fault::StoreOp;
use quiver_catalog::JobState;
use quiver_planner::jobs::{JobScheduler, SchedulerConfig};
use quiver_tests::TestDb;

/// A collection with a snapshot, an index, deletes before and writes after the snapshot.
async fn docs_with_snapshot() -> TestDb {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, category VARCHAR, embedding VECTOR(2));
         INSERT INTO docs SELECT value, CASE WHEN value % 2 = 0 THEN 'even' ELSE 'odd' END,
           make_array(value % 10, value / 10) FROM generate_series(1, 300);
         CREATE INDEX e ON docs USING IVF_FLAT (embedding) WITH (num_partitions = 2);
         DELETE FROM docs WHERE id <= 10;
         ALTER TABLE docs SET TBLPROPERTIES ('owner' = 'search');
         CREATE SNAPSHOT nightly ON docs COMMENT 'before';
         INSERT INTO docs VALUES (1000, 'late', [0, 0]);
         DELETE FROM docs WHERE id = 20;
         ALTER TABLE docs SET TBLPROPERTIES ('owner' = 'ads', 'late' = 'yes');",
    )
    .await;
    db
}

/// Runs a statement that submits a job and waits for it; returns the finished job.
async fn run_job(db: &TestDb, sql: &str) -> quiver_catalog::JobRecord {
    let id: u64 = db.rows(sql).await[0][0].parse().unwrap();
    db.session.scheduler().wait(id).await.unwrap()
}

/// Makes every file copy wait while the returned gate is closed (`true`).
fn hold_copies(db: &TestDb) -> Arc<AtomicBool> {
    let gate = Arc::new(AtomicBool::new(true));
    let hold = gate.clone();
    db.hooks.set(Arc::new(move |op: StoreOp, _path: &Path| {
        while op == StoreOp::Copy && hold.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(())
    }));
    gate
}

/// Writes a file no version refers to (what an interrupted write leaves) into the data
/// directory of `docs`; returns its path.
async fn plant_orphan(db: &TestDb, name: &str) -> std::path::PathBuf {
    let record = db
        .session
        .catalog()
        .collection("default", "docs")
        .await
        .unwrap();
    let orphan = db.dir.path().join(&record.location).join("data").join(name);
    std::fs::write(&orphan, b"half-written").unwrap();
    orphan
}

const QUERY: &str = "embedding <-> [3, 3]";

async fn same_content(db: &TestDb, a: &str, b: &str) {
    let rows = |t: &str| format!("SELECT id, category, embedding FROM {t} ORDER BY id");
    assert_eq!(
        db.rows(&rows(a)).await,
        db.rows(&rows(b)).await,
        "{a} vs {b}"
    );
    let knn = |t: &str| format!("SELECT id, {QUERY} AS d FROM {t} ORDER BY d, id LIMIT 5");
    assert_eq!(db.rows(&knn(a)).await, db.rows(&knn(b)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_restore_holds_exactly_the_snapshot() {
    let db = docs_with_snapshot().await;
    let job = run_job(&db, "RESTORE SNAPSHOT nightly ON docs TO docs_restored").await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.progress, 100);
    assert!(
        job.files_total > 0 && job.files_done == job.files_total,
        "{job:?}"
    );
    assert!(job.bytes_done > 0 && job.started_at.is_some() && job.finished_at.is_some());
    same_content(&db, "docs_restored", "snapshot('docs', 'nightly')").await;
    assert_eq!(db.value("SELECT count(*) FROM docs_restored").await, "290");
    assert!(db
        .rows("SELECT id FROM docs_restored WHERE id IN (1000, 5)")
        .await
        .is_empty());
    assert_eq!(
        db.value("SELECT count(*) FROM docs_restored WHERE id = 20")
            .await,
        "1"
    );
    // Index, primary key, properties and schema came along, as they were at the snapshot; the
    // restored collection is writable.
    assert_eq!(
        db.value("SELECT properties FROM quiver.collections WHERE name = 'docs_restored'")
            .await,
        "owner=search"
    );
    let indexes = db.rows("SHOW INDEXES FROM docs_restored").await;
    assert_eq!(indexes[0][1], "e");
    let err = db
        .error("INSERT INTO docs_restored VALUES (20, 'x', [1, 1])")
        .await;
    assert!(err.contains("duplicate primary key"), "{err}");
    db.sql("INSERT INTO docs_restored VALUES (5000, 'new', [1, 1])")
        .await;
    // The source and the snapshot are untouched.
    assert_eq!(
        db.value("SELECT count(*) FROM snapshot('docs', 'nightly')")
            .await,
        "290"
    );
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "290");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_restore_works_in_a_copy_of_the_data_root() {
    let db = docs_with_snapshot().await;
    // Copied as backups are made: every file gets a new inode, keeping its time and size.
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", db.dir.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let copied = TestDb {
        session: quiver_tests::open_session(&copy.path().to_string_lossy(), Default::default())
            .await,
        dir: copy,
        hooks: Default::default(),
    };
    let job = run_job(&copied, "RESTORE SNAPSHOT nightly ON docs TO docs_restored").await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(
        copied.value("SELECT count(*) FROM docs_restored").await,
        "290"
    );
    same_content(&copied, "docs_restored", "snapshot('docs', 'nightly')").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_copy_restore_reads_the_snapshots_files_and_survives_the_source() {
    let db = docs_with_snapshot().await;
    let job = run_job(
        &db,
        "RESTORE SNAPSHOT nightly ON docs TO clone IN DATABASE default WITH (mode = 'zero_copy')",
    )
    .await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    same_content(&db, "clone", "snapshot('docs', 'nightly')").await;
    // The clone copied no data file.
    let record = db
        .session
        .catalog()
        .collection("default", "clone")
        .await
        .unwrap();
    let data = db.dir.path().join(&record.location).join("data");
    assert!(!data.exists() || std::fs::read_dir(&data).unwrap().next().is_none());
    // The clone searches through the index it shares with the source.
    let indexed = format!("SELECT id FROM clone ORDER BY {QUERY} LIMIT 5");
    let plan = db.rows(&format!("EXPLAIN {indexed}")).await;
    assert!(
        plan.iter().any(|r| r[1].contains("IndexKnnExec")),
        "{plan:?}"
    );
    let nearest = db.rows(&indexed).await;
    // Dropping the snapshot and the source keeps what the clone reads, its index files
    // included, even after GC.
    db.sql("DROP TABLE docs CASCADE").await;
    db.sql("VACUUM WITH (retention_seconds = 0, grace_seconds = 0)")
        .await;
    assert_eq!(db.value("SELECT count(*) FROM clone").await, "290");
    assert_eq!(db.rows(&indexed).await, nearest);
    db.sql("INSERT INTO clone VALUES (7777, 'w', [1, 2])").await;
    assert_eq!(db.value("SELECT count(*) FROM clone").await, "291");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_restore_rolls_back_as_a_new_version() {
    let db = docs_with_snapshot().await;
    let job = run_job(&db, "RESTORE TABLE docs TO SNAPSHOT nightly").await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    same_content(&db, "docs", "snapshot('docs', 'nightly')").await;
    // History is kept: the snapshot still reads, and new writes go on top.
    db.sql("INSERT INTO docs VALUES (1000, 'again', [0, 0])")
        .await;
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "291");
    // The same job run again (a retry whose first outcome was lost) does not roll back a
    // second time over the newer write.
    let retry = quiver_planner::jobs::restore::plan(
        db.session.catalog(),
        &job,
        Arc::new(quiver_operators::jobs::NoProgress),
    )
    .await
    .unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    datafusion::physical_plan::collect(retry.plan, ctx.task_ctx())
        .await
        .unwrap();
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "291");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_restores_are_refused_before_any_work() {
    let db = docs_with_snapshot().await;
    db.sql("CREATE TABLE taken (id INT)").await;
    let err = db.error("RESTORE SNAPSHOT nightly ON docs TO taken").await;
    assert_eq!(err, "collection 'default.taken' already exists");
    let err = db.error("RESTORE SNAPSHOT nope ON docs TO x").await;
    assert_eq!(err, "snapshot 'nope' on 'default.docs' does not exist");
    let err = db
        .error("RESTORE SNAPSHOT nightly ON docs TO x IN DATABASE nowhere")
        .await;
    assert_eq!(err, "database 'nowhere' does not exist");
    let err = db
        .error("RESTORE SNAPSHOT nightly ON docs TO x WITH (mode = 'teleport')")
        .await;
    assert!(err.contains("unknown restore mode 'teleport'"), "{err}");
    let err = db
        .error("RESTORE SNAPSHOT nightly ON docs TO x WITH (speed = 'fast')")
        .await;
    assert!(err.contains("unknown option 'speed'"), "{err}");
    assert!(db.rows("SHOW JOBS").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_restore_drops_the_half_made_target_and_a_retry_succeeds() {
    let db = docs_with_snapshot().await;
    // Fail the third file copy.
    let copies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = copies.clone();
    db.hooks.set(Arc::new(move |op: StoreOp, _path: &Path| {
        if op == StoreOp::Copy && counter.fetch_add(1, Ordering::SeqCst) == 2 {
            return Err("disk failed".to_string());
        }
        Ok(())
    }));
    let job = run_job(&db, "RESTORE SNAPSHOT nightly ON docs TO docs_restored").await;
    db.hooks.clear();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.error
            .as_deref()
            .unwrap_or_default()
            .contains("disk failed"),
        "{job:?}"
    );
    let err = db.error("SELECT * FROM docs_restored").await;
    assert!(err.contains("not found"), "{err}");
    let spec: quiver_planner::jobs::restore::RestoreSpec =
        serde_json::from_value(job.spec.clone()).unwrap();
    let target = db
        .dir
        .path()
        .join(format!("collections/{}", spec.target_id.unwrap()));
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none());
    // The snapshot is intact and the same restore succeeds when retried.
    let job = run_job(&db, "RESTORE SNAPSHOT nightly ON docs TO docs_restored").await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    same_content(&db, "docs_restored", "snapshot('docs', 'nightly')").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_interrupted_by_a_restart_is_resumed() {
    let mut db = docs_with_snapshot().await;
    // The process "dies" during the copy: every write after the first copy fails.
    let crashed = Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    db.hooks.set(Arc::new(move |op: StoreOp, path: &Path| {
        if op == StoreOp::Copy {
            flag.store(true, Ordering::SeqCst);
        }
        let progress_write = path.as_ref().contains("_catalog");
        let dead = flag.load(Ordering::SeqCst) && op != StoreOp::Get && op != StoreOp::List;
        if dead && (progress_write || op == StoreOp::Copy) {
            return Err("process died".to_string());
        }
        Ok(())
    }));
    let id: u64 = db
        .rows("RESTORE SNAPSHOT nightly ON docs TO docs_restored")
        .await[0][0]
        .parse()
        .unwrap();
    // Wait until the job hit the crash; its record is stuck RUNNING (it could not write).
    for _ in 0..200 {
        if crashed.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(crashed.load(Ordering::SeqCst));
    db.restart().await;
    let job = db.session.catalog().job(id).await.unwrap();
    assert_eq!(job.state, JobState::Running, "{job:?}");
    // A new server takes it over (its runner is gone: the lease has expired at once here).
    let scheduler = JobScheduler::new(
        db.session.catalog().clone(),
        SchedulerConfig {
            lease: std::time::Duration::ZERO,
            ..SchedulerConfig::default()
        },
    );
    assert_eq!(scheduler.recover().await.unwrap(), vec![id]);
    let job = scheduler.wait(id).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    same_content(&db, "docs_restored", "snapshot('docs', 'nightly')").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_read_by_a_restore_cannot_be_dropped_and_jobs_can_be_cancelled() {
    let db = docs_with_snapshot().await;
    let gate = hold_copies(&db);
    let id: u64 = db
        .rows("RESTORE SNAPSHOT nightly ON docs TO docs_restored")
        .await[0][0]
        .parse()
        .unwrap();
    for _ in 0..200 {
        if db.session.catalog().job(id).await.unwrap().state == JobState::Running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let err = db.error("DROP SNAPSHOT nightly ON docs").await;
    assert_eq!(
        err,
        format!(
            "snapshot 'nightly' on 'default.docs' is in use by job {id}; wait for it or cancel it"
        )
    );
    // Nor can the collection, with or without CASCADE.
    let err = db.error("DROP TABLE docs CASCADE").await;
    assert!(err.contains(&format!("is in use by job {id}")), "{err}");
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "290");
    let rows = db.rows(&format!("CANCEL JOB {id}")).await;
    assert_eq!(rows[0][3], "RUNNING");
    gate.store(false, Ordering::SeqCst);
    let job = db.session.scheduler().wait(id).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert!(db
        .error("SELECT * FROM docs_restored")
        .await
        .contains("not found"));
    let err = db.error(&format!("CANCEL JOB {id}")).await;
    assert_eq!(err, format!("job {id} has already finished (CANCELLED)"));
    db.sql("DROP SNAPSHOT nightly ON docs").await;
    assert_eq!(db.error("CANCEL JOB 999").await, "job 999 does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_removes_only_what_nothing_needs() {
    let db = docs_with_snapshot().await;
    // An orphan file (an interrupted write) and a dropped collection.
    let orphan = plant_orphan(&db, "orphan.lance").await;
    db.sql("CREATE TABLE gone (id INT); INSERT INTO gone VALUES (1)")
        .await;
    db.sql("DROP TABLE gone").await;

    let dry = db
        .rows("VACUUM DRY RUN WITH (retention_seconds = 0, grace_seconds = 0)")
        .await;
    assert!(orphan.exists(), "a dry run deletes nothing");
    let report = db
        .rows("VACUUM WITH (retention_seconds = 0, grace_seconds = 0)")
        .await;
    assert_eq!(dry, report, "the dry run reports what the run removes");
    let category = |name: &str| report.iter().find(|r| r[0] == name).cloned().unwrap();
    assert!(
        category("unreferenced files")[1].parse::<u64>().unwrap() >= 1,
        "{report:?}"
    );
    assert!(
        category("expired versions")[1].parse::<u64>().unwrap() >= 1,
        "{report:?}"
    );
    assert!(!orphan.exists());
    // Everything still reads in full: the collection, the snapshot, the index.
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "290");
    assert_eq!(
        db.value("SELECT count(*) FROM snapshot('docs', 'nightly')")
            .await,
        "290"
    );
    db.rows(&format!(
        "SELECT id, {QUERY} AS d FROM snapshot('docs', 'nightly') ORDER BY d LIMIT 3"
    ))
    .await;
    // A second run finds nothing left.
    let again = db
        .rows("VACUUM WITH (retention_seconds = 0, grace_seconds = 0)")
        .await;
    assert!(again.iter().all(|r| r[1] == "0"), "{again:?}");
    // Young files are kept by the default grace period.
    std::fs::write(&orphan, b"in flight").unwrap();
    db.sql("VACUUM").await;
    assert!(orphan.exists());
    let jobs = db.rows("SELECT kind, state FROM quiver.jobs").await;
    assert!(
        jobs.iter().all(|j| j[0] == "GC" && j[1] == "SUCCEEDED"),
        "{jobs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_refuses_to_delete_when_the_reference_set_cannot_load() {
    let db = docs_with_snapshot().await;
    let orphan = plant_orphan(&db, "orphan.lance").await;
    let (_, snapshot) = db
        .session
        .catalog()
        .snapshot("default", "docs", "nightly")
        .await
        .unwrap();
    let manifest = db.dir.path().join(&snapshot.manifest_path);
    std::fs::write(&manifest, b"corrupt").unwrap();
    let err = db
        .error("VACUUM WITH (retention_seconds = 0, grace_seconds = 0)")
        .await;
    assert!(err.contains("corrupt snapshot manifest"), "{err}");
    assert!(
        orphan.exists(),
        "nothing is deleted without the full reference set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_racing_snapshots_restores_and_writes_never_loses_a_file() {
    let db = TestDb::new().await;
    db.sql(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, embedding VECTOR(2));
         INSERT INTO docs SELECT value, make_array(value, value) FROM generate_series(1, 50)",
    )
    .await;
    // Two races a round. Writes and snapshot creates are protected only by the grace period
    // (their files exist before the record that refers to them commits; a PENDING snapshot
    // older than the grace counts as an interrupted create), so they race a run with a grace
    // longer than they take. Restores and committed snapshots are protected by the catalog, so
    // they race a run with no grace at all, which would delete any file they left unprotected.
    const VACUUM_WITH_GRACE: &str = "VACUUM WITH (retention_seconds = 0, grace_seconds = 60)";
    const VACUUM: &str = "VACUUM WITH (retention_seconds = 0, grace_seconds = 0)";
    let vacuum = |sql: &'static str| {
        let session = db.session.clone();
        tokio::spawn(async move { session.run_script(sql).await.unwrap() })
    };
    let mut expected: Vec<(String, usize)> = Vec::new();
    for round in 0..8u64 {
        // An orphan of an interrupted write, old enough to collect.
        let orphan = plant_orphan(&db, &format!("orphan{round}.lance")).await;
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&orphan)
            .and_then(|f| f.set_modified(hour_ago))
            .unwrap();
        let gc = vacuum(VACUUM_WITH_GRACE);
        for i in 0..3u64 {
            let id = 1000 + round * 10 + i;
            db.sql(&format!(
                "INSERT INTO docs VALUES ({id}, [{id}, 0]); DELETE FROM docs WHERE id = {}",
                round * 3 + i + 1
            ))
            .await;
        }
        db.sql(&format!("CREATE SNAPSHOT s{round} ON docs")).await;
        gc.await.unwrap();
        assert!(!orphan.exists(), "round {round}: the orphan was collected");

        let gc = vacuum(VACUUM);
        let count: usize = db
            .value(&format!(
                "SELECT count(*) FROM snapshot('docs', 's{round}')"
            ))
            .await
            .parse()
            .unwrap();
        assert_eq!(count, 50, "each round inserts three rows and deletes three");
        expected.push((format!("snapshot('docs', 's{round}')"), count));
        let job = run_job(
            &db,
            &format!("RESTORE SNAPSHOT s{round} ON docs TO r{round}"),
        )
        .await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
        expected.push((format!("r{round}"), count));
        gc.await.unwrap();
    }
    db.sql(VACUUM).await;
    // Every snapshot and every collection reads in full.
    for (table, count) in &expected {
        let got: usize = db
            .value(&format!("SELECT count(*) FROM {table}"))
            .await
            .parse()
            .unwrap();
        assert_eq!(got, *count, "{table}");
        db.rows(&format!("SELECT * FROM {table}")).await;
    }
    let live: usize = db.value("SELECT count(*) FROM docs").await.parse().unwrap();
    assert_eq!(live, 50 - 24 + 24);
    db.rows("SELECT * FROM docs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_reads_the_catalog_after_listing_so_a_restore_started_meanwhile_keeps_its_files() {
    let db = docs_with_snapshot().await;
    let catalog = db.session.catalog().clone();
    let spec = quiver_planner::jobs::gc::GcSpec {
        retention_seconds: 0,
        grace_seconds: 0,
        ..Default::default()
    };
    let plan = quiver_planner::jobs::gc::build(
        &catalog,
        &spec,
        Arc::new(quiver_operators::jobs::NoProgress),
    )
    .await
    .unwrap();
    // A restore starts after the collection was planned; its copies are hard links, as old as
    // the files they copy, so the grace period does not protect them: the job record does.
    let (_, snapshot) = catalog
        .snapshot("default", "docs", "nightly")
        .await
        .unwrap();
    let source = catalog.collection("default", "docs").await.unwrap();
    let target_id = "0123456789abcdef0123456789abcdef";
    catalog
        .submit_job(
            quiver_catalog::JobKind::Restore,
            "default.target".to_string(),
            serde_json::json!({
                "mode": "copy",
                "snapshot_id": snapshot.id,
                "collection_id": source.id,
                "target_database": "default",
                "target_name": "target",
                "target_id": target_id,
            }),
        )
        .await
        .unwrap();
    let copy = db
        .dir
        .path()
        .join(format!("collections/{target_id}/data/copied.lance"));
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(&copy, b"copied").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .unwrap();
    assert!(copy.exists(), "a running restore's copy was collected");
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "290");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_of_a_clone_keeps_what_it_reads_when_everything_before_it_is_gone() {
    let db = docs_with_snapshot().await;
    let first = run_job(
        &db,
        "RESTORE SNAPSHOT nightly ON docs TO c1 WITH (mode = 'zero_copy')",
    )
    .await;
    assert_eq!(first.state, JobState::Succeeded, "{:?}", first.error);
    db.sql("CREATE SNAPSHOT s2 ON c1").await;
    let second = run_job(
        &db,
        "RESTORE SNAPSHOT s2 ON c1 TO c2 WITH (mode = 'zero_copy')",
    )
    .await;
    assert_eq!(second.state, JobState::Succeeded, "{:?}", second.error);
    let all = "SELECT id, category, embedding FROM c2 ORDER BY id";
    let before = db.rows(all).await;
    assert_eq!(before.len(), 290);
    // Nothing but c2 pins the first collection's old version now; its rows are rewritten away
    // and every unpinned version expires.
    db.sql(
        "DROP SNAPSHOT s2 ON c1;
         DROP TABLE c1;
         DROP SNAPSHOT nightly ON docs;
         DELETE FROM docs;
         VACUUM WITH (retention_seconds = 0, grace_seconds = 0)",
    )
    .await;
    assert_eq!(db.rows(all).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_removes_tags_whose_snapshot_or_restore_is_gone() {
    let db = docs_with_snapshot().await;
    let catalog = db.session.catalog();
    let record = catalog.collection("default", "docs").await.unwrap();
    let dataset = catalog.open_dataset(&record, None).await.unwrap();
    // Left by crashes: a snapshot's tag whose record is gone, a zero-copy restore's tag whose
    // target never came to be.
    let orphans = [
        quiver_catalog::snapshot::tag_name("00000000000000000000000000000000"),
        quiver_catalog::catalog::clone_tag("11111111111111111111111111111111"),
    ];
    for tag in &orphans {
        dataset.tags().create(tag, 1).await.unwrap();
    }
    let (_, snapshot) = catalog
        .snapshot("default", "docs", "nightly")
        .await
        .unwrap();
    db.sql("VACUUM WITH (retention_seconds = 0, grace_seconds = 0)")
        .await;
    let tags = dataset.tags().list().await.unwrap();
    for tag in &orphans {
        assert!(!tags.contains_key(tag), "{tag} was kept: {tags:?}");
    }
    // The live snapshot's tag stays, and the snapshot still reads in full.
    assert!(tags.contains_key(&quiver_catalog::snapshot::tag_name(&snapshot.id)));
    assert_eq!(
        db.value("SELECT count(*) FROM snapshot('docs', 'nightly')")
            .await,
        "290"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_restore_of_a_damaged_snapshot_fails_naming_the_file_and_leaves_no_target() {
    let db = docs_with_snapshot().await;
    let catalog = db.session.catalog();
    let (_, snapshot) = catalog
        .snapshot("default", "docs", "nightly")
        .await
        .unwrap();
    let files = catalog.snapshot_files(&snapshot).await.unwrap();
    let data = files
        .iter()
        .find(|f| f.kind == quiver_catalog::inventory::FileKind::Data)
        .unwrap();
    // The file is replaced by other bytes of the same size.
    let path = db.dir.path().join(&data.path);
    let flipped: Vec<u8> = std::fs::read(&path).unwrap().iter().map(|b| !b).collect();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, flipped).unwrap();
    let job = run_job(&db, "RESTORE SNAPSHOT nightly ON docs TO docs_restored").await;
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "snapshot file '{}' no longer matches its manifest",
            data.path
        )),
        "{error}"
    );
    assert!(db
        .error("SELECT * FROM docs_restored")
        .await
        .contains("not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_runs_no_more_jobs_at_once_than_its_limit() {
    let db = docs_with_snapshot().await;
    let gate = hold_copies(&db);
    let scheduler = JobScheduler::new(
        db.session.catalog().clone(),
        SchedulerConfig {
            max_concurrent: 1,
            ..SchedulerConfig::default()
        },
    );
    let session = db.session.clone().with_scheduler(scheduler.clone());
    let submit = |target: &'static str| {
        let session = session.clone();
        async move {
            let batches = session
                .run_script(&format!("RESTORE SNAPSHOT nightly ON docs TO {target}"))
                .await
                .unwrap();
            quiver_tests::format_rows(&batches[0])[0][0]
                .parse::<u64>()
                .unwrap()
        }
    };
    let first = submit("r1").await;
    let second = submit("r2").await;
    let state = |id: u64| {
        let catalog = db.session.catalog().clone();
        async move { catalog.job(id).await.unwrap().state }
    };
    for _ in 0..400 {
        if state(first).await == JobState::Running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(state(first).await, JobState::Running);
    // The second waits for the slot the first holds.
    assert_eq!(state(second).await, JobState::Pending);
    gate.store(false, Ordering::SeqCst);
    for id in [first, second] {
        let job = scheduler.wait(id).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    }
    assert_eq!(db.value("SELECT count(*) FROM r2").await, "290");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_expires_the_records_of_long_finished_jobs_only() {
    let db = docs_with_snapshot().await;
    let restore = run_job(&db, "RESTORE SNAPSHOT nightly ON docs TO r1").await;
    assert_eq!(restore.state, JobState::Succeeded, "{:?}", restore.error);
    let jobs = || async {
        db.rows("SELECT id, kind FROM quiver.jobs ORDER BY id")
            .await
    };
    // The default retention (a week) keeps them; so does a run scoped to one collection.
    db.sql("VACUUM; VACUUM docs WITH (job_retention_seconds = 0)")
        .await;
    let before = jobs().await;
    assert_eq!(before.len(), 3, "{before:?}");
    let dry = db
        .rows("VACUUM DRY RUN WITH (job_retention_seconds = 0)")
        .await;
    let expired = |report: &[Vec<String>]| {
        report
            .iter()
            .find(|r| r[0] == "expired jobs")
            .map(|r| r[1].clone())
    };
    assert_eq!(expired(&dry).as_deref(), Some("3"), "{dry:?}");
    assert_eq!(jobs().await.len(), 4, "a dry run removes no record");
    let report = db.rows("VACUUM WITH (job_retention_seconds = 0)").await;
    // The dry run itself had finished too; the run removing them is still running.
    assert_eq!(expired(&report).as_deref(), Some("4"), "{report:?}");
    let after = jobs().await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0][1], "GC");
    assert!(after[0][0].parse::<u64>().unwrap() > before[2][0].parse::<u64>().unwrap());
    let err = db.error(&format!("CANCEL JOB {}", restore.id)).await;
    assert!(
        err.contains(&format!("job {} does not exist", restore.id)),
        "{err}"
    );
    // The restored collection is untouched by the expiry of its job.
    assert_eq!(db.value("SELECT count(*) FROM r1").await, "290");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_garbage_collection_runs_on_its_interval() {
    let db = docs_with_snapshot().await;
    let orphan = plant_orphan(&db, "orphan.lance").await;
    db.session.scheduler().start_interval_gc(
        std::time::Duration::from_millis(100),
        quiver_planner::jobs::gc::GcSpec {
            retention_seconds: 0,
            grace_seconds: 0,
            ..Default::default()
        },
    );
    let mut gc_jobs = Vec::new();
    for _ in 0..600 {
        gc_jobs = db
            .rows("SELECT id, state FROM quiver.jobs WHERE kind = 'GC' ORDER BY id")
            .await;
        if !orphan.exists() && gc_jobs.iter().filter(|j| j[1] == "SUCCEEDED").count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!orphan.exists(), "the scheduled run removed the orphan");
    assert!(
        gc_jobs.iter().filter(|j| j[1] == "SUCCEEDED").count() >= 2,
        "{gc_jobs:?}"
    );
    // Never two at once: each run starts after the one before it finished.
    let catalog = db.session.catalog();
    let mut runs = Vec::new();
    for job in &gc_jobs {
        runs.push(catalog.job(job[0].parse().unwrap()).await.unwrap());
    }
    for pair in runs.windows(2) {
        if let (Some(finished), Some(started)) = (pair[0].finished_at, pair[1].started_at) {
            assert!(finished <= started, "{pair:?}");
        }
    }
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "290");
    assert_eq!(
        db.value("SELECT count(*) FROM snapshot('docs', 'nightly')")
            .await,
        "290"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_takes_a_tag_dropped_while_it_reads_as_gone() {
    let db = docs_with_snapshot().await;
    // The snapshot's tag vanishes between the cleanup's listing of the tags and its read of the
    // tag, as when DROP SNAPSHOT runs at the same moment.
    let dir = db.dir.path().to_path_buf();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    db.hooks.set(Arc::new(move |op: StoreOp, path: &Path| {
        if op == StoreOp::Get
            && path.as_ref().contains("_refs/tags/")
            && !flag.swap(true, Ordering::SeqCst)
        {
            let absolute = std::path::Path::new("/").join(path.as_ref());
            let file = if absolute.exists() {
                absolute
            } else {
                dir.join(path.as_ref())
            };
            std::fs::remove_file(file).unwrap();
        }
        Ok(())
    }));
    db.sql("VACUUM").await;
    db.hooks.clear();
    assert!(dropped.load(Ordering::SeqCst), "the cleanup read no tag");
    assert_eq!(db.value("SELECT count(*) FROM docs").await, "290");
}
