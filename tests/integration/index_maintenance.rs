//! Index maintenance: `OPTIMIZE` and the job that folds rows written after an index into it,
//! on demand and on its own past a collection's threshold; its cancellation and resumption;
//! searches exact before, during and after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as StorePath;
use quiver_catalog::fault::StoreOp;
use quiver_catalog::indices::index_coverage;
use quiver_catalog::{JobKind, JobState};
use quiver_planner::jobs::optimize::submit_due;
use quiver_planner::jobs::{JobScheduler, SchedulerConfig};
use quiver_tests::TestDb;

use crate::index_search::{
    analyzed, counter, exact, indexed_collection, literal, search, vectors, Path, DIM, ROWS,
};

/// `(segments, rows outside)` of the collection's one vector index at its newest version.
async fn coverage(db: &TestDb, table: &str) -> (usize, u64) {
    let catalog = db.session.catalog();
    let record = catalog.collection("default", table).await.unwrap();
    let dataset = catalog.open_dataset(&record, None).await.unwrap();
    let coverage = index_coverage(&dataset).await.unwrap();
    let [index] = coverage.as_slice() else {
        panic!("not one index: {coverage:?}")
    };
    (index.segments, index.rows_unindexed)
}

/// The report of an `OPTIMIZE` statement: `(before, after)` by what was measured.
async fn report(db: &TestDb, sql: &str) -> std::collections::BTreeMap<String, (u64, u64)> {
    db.rows(sql)
        .await
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].parse().unwrap())))
        .collect()
}

/// Inserts `n` rows with ids from `first` into `docs (id, embedding VECTOR(DIM))`.
async fn insert(db: &TestDb, first: usize, n: usize) {
    let data = vectors(n, first as u64);
    let values: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "({}, {})",
                first + i,
                literal(&data[i * DIM..(i + 1) * DIM])
            )
        })
        .collect();
    db.sql(&format!("INSERT INTO docs VALUES {}", values.join(", ")))
        .await;
}

/// Submits an optimisation of `docs` as a job, without waiting for it.
async fn submit_optimize(db: &TestDb) -> quiver_catalog::JobRecord {
    let record = db
        .session
        .catalog()
        .collection("default", "docs")
        .await
        .unwrap();
    let spec = quiver_planner::jobs::optimize::OptimizeSpec {
        collection_id: record.id.clone(),
        retrain: false,
    };
    quiver_planner::jobs::optimize::submit(db.session.scheduler(), &record, &spec, false)
        .await
        .unwrap()
        .unwrap()
}

/// Makes every write of index files wait while the returned gate is closed (`true`).
fn hold_index_writes(db: &TestDb) -> Arc<AtomicBool> {
    let gate = Arc::new(AtomicBool::new(true));
    let hold = gate.clone();
    db.hooks.set(Arc::new(move |op: StoreOp, path: &StorePath| {
        let index_write = matches!(op, StoreOp::Put | StoreOp::PutMultipart)
            && path.as_ref().contains("_indices");
        while index_write && hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }));
    gate
}

/// Waits until job `id` is RUNNING.
async fn until_running(db: &TestDb, id: u64) {
    for _ in 0..400 {
        if db.session.catalog().job(id).await.unwrap().state == JobState::Running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_folds_the_rows_written_since_into_the_index_as_a_job() {
    let (db, data) = indexed_collection("VECTOR", "hnsw (embedding vector_l2_ops)").await;
    db.sql("SET quiver.ef = 400").await;
    let q = literal(&data[7 * DIM..8 * DIM]);
    let query = format!("SELECT id, embedding <-> {q} AS d FROM docs ORDER BY d LIMIT 5");
    assert_eq!(search(&db, &query).await.1, Path::Loaded);
    db.sql("CREATE SNAPSHOT before ON docs").await;
    let written = ROWS + 1000;
    insert(&db, written, 40).await;
    db.sql(&format!("INSERT INTO docs VALUES (100000, {q})"))
        .await;
    db.sql("DELETE FROM docs WHERE id = 7").await;
    assert_eq!(coverage(&db, "docs").await, (1, 41));
    let plan = analyzed(&db, &query).await;
    assert_eq!(counter(&plan, "rows_outside_index"), 41, "{plan}");

    let plan = db.rows("EXPLAIN OPTIMIZE docs").await;
    assert!(
        plan[0][1].starts_with("CollectionOptimizeExec: collection=default.docs, retrain=false"),
        "{plan:?}"
    );
    // Eight fragments (six indexed, two written since, one with a deleted row) become fewer:
    // those of one index coverage compacted together, without the deleted row, the indices
    // remapped; then the rows written since are added to the index.
    let first = report(&db, "OPTIMIZE docs").await;
    let (before, after) = first["fragments"];
    assert!(before == 8 && after < before, "{first:?}");
    assert!(first["deleted rows"].1 <= 1, "{first:?}");
    assert_eq!(first["index embedding_idx segments"], (1, 1));
    assert_eq!(first["index embedding_idx rows outside"], (41, 0));
    assert_eq!(coverage(&db, "docs").await, (1, 0));
    let job = &db.rows("SHOW JOBS").await[0];
    assert_eq!(job[1..5], ["OPTIMIZE", "default.docs", "SUCCEEDED", "100"]);
    assert_eq!(job[9..11], ["41", "41"], "rows done of rows to do: {job:?}");

    // Searches stay exact throughout: first while the optimised index loads (through Lance, the
    // loaded index's fragments having been rewritten), then from it, with no row outside it.
    let expected = exact(&db, &query).await;
    assert_eq!(expected[0], (100000, 0.0));
    let mut went = None;
    for _ in 0..200 {
        let (rows, path) = search(&db, &query).await;
        assert_eq!(rows[0], expected[0]);
        let outside = counter(&analyzed(&db, &query).await, "rows_outside_index");
        if path == Path::Loaded && outside == 0 {
            assert_eq!(rows, expected);
            went = Some(path);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        went,
        Some(Path::Loaded),
        "the optimised index never took over"
    );
    let pinned = query.replace("FROM docs", "FROM snapshot('docs', 'before')");
    let (rows, _) = search(&db, &pinned).await;
    assert_eq!(rows[0], (7, 0.0));
    assert_eq!(rows, exact(&db, &pinned).await);

    // Fragments now under the same index are compacted by the next run; once nothing is left to
    // do, nothing is done: no new version.
    let mut runs = 0;
    loop {
        runs += 1;
        let again = report(&db, "OPTIMIZE TABLE docs").await;
        if again.values().all(|(before, after)| before == after) {
            break;
        }
        assert!(runs < 3, "still compacting: {again:?}");
        assert!(again["fragments"].1 < again["fragments"].0, "{again:?}");
    }
    // Trained again over every row, on request.
    let retrained = report(&db, "OPTIMIZE docs WITH (retrain = true)").await;
    let (before, after) = retrained["version"];
    assert!(after > before, "{retrained:?}");
    assert_eq!(search(&db, &query).await.0, expected);

    for (sql, message) in [
        ("OPTIMIZE nosuch", "nosuch"),
        (
            "OPTIMIZE docs WITH (retrain = 'maybe')",
            "retrain must be true or false",
        ),
        ("OPTIMIZE docs WITH (speed = 1)", "unknown option 'speed'"),
    ] {
        let err = db.error(sql).await;
        assert!(err.contains(message), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_past_its_threshold_is_optimised_on_its_own() {
    let db = TestDb::new().await;
    db.sql(&format!(
        "CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR({DIM}))"
    ))
    .await;
    insert(&db, 0, 300).await;
    db.sql("CREATE INDEX ON docs USING hnsw (embedding)").await;
    db.sql("ALTER TABLE docs SET (optimize_unindexed_rows = '20')")
        .await;
    let scheduler = db.session.scheduler();

    insert(&db, 1000, 19).await;
    assert!(submit_due(scheduler).await.unwrap().is_empty());
    insert(&db, 2000, 1).await;
    let jobs = submit_due(scheduler).await.unwrap();
    let [job] = jobs.as_slice() else {
        panic!("{jobs:?}")
    };
    assert_eq!(
        (job.kind, job.target.as_str()),
        (JobKind::Optimize, "default.docs")
    );
    // One at a time per collection: while it is pending or running none is added, and once
    // it is done nothing is due.
    assert!(submit_due(scheduler).await.unwrap().is_empty());
    let done = scheduler.wait(job.id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(coverage(&db, "docs").await, (1, 0));
    assert!(submit_due(scheduler).await.unwrap().is_empty());

    // A share of the indexed rows (320 of them: 10% is 32).
    db.sql("ALTER TABLE docs SET (optimize_unindexed_rows = '10%')")
        .await;
    insert(&db, 3000, 31).await;
    assert!(submit_due(scheduler).await.unwrap().is_empty());
    insert(&db, 4000, 1).await;
    let jobs = submit_due(scheduler).await.unwrap();
    assert_eq!(jobs.len(), 1);
    scheduler.wait(jobs[0].id).await.unwrap();

    // Off, and back to the default (at least 1,000 rows outside).
    db.sql("ALTER TABLE docs SET (optimize_unindexed_rows = 'off')")
        .await;
    insert(&db, 5000, 100).await;
    assert!(submit_due(scheduler).await.unwrap().is_empty());
    db.sql("ALTER TABLE docs SET (optimize_unindexed_rows = NULL)")
        .await;
    assert!(submit_due(scheduler).await.unwrap().is_empty());
    assert_eq!(coverage(&db, "docs").await, (1, 100));

    let err = db
        .error("ALTER TABLE docs SET (optimize_unindexed_rows = 'lots')")
        .await;
    assert!(
        err.contains("optimize_unindexed_rows is a number of rows"),
        "{err}"
    );
    let before = db.rows("SHOW JOBS").await.len();
    assert!(submit_due(scheduler).await.unwrap().is_empty());
    assert_eq!(db.rows("SHOW JOBS").await.len(), before);

    // Deleted rows are dropped from the files; the rows and the answers stay the same.
    db.sql("DELETE FROM docs WHERE id % 4 = 0").await;
    let all = "SELECT id, embedding FROM docs ORDER BY id";
    let rows = db.rows(all).await;
    let knn = format!(
        "SELECT id FROM docs ORDER BY embedding <-> {} LIMIT 5",
        literal(&vectors(1, 77))
    );
    let nearest = db.rows(&knn).await;
    let optimized = report(&db, "OPTIMIZE docs").await;
    let (deleted, left) = optimized["deleted rows"];
    assert!(deleted > 0 && left == 0, "{optimized:?}");
    assert_eq!(db.rows(all).await, rows);
    assert_eq!(db.rows(&knn).await, nearest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_optimisation_leaves_the_index_as_it_was() {
    let (db, data) = indexed_collection("VECTOR", "hnsw (embedding vector_l2_ops)").await;
    insert(&db, ROWS + 1000, 50).await;
    let gate = hold_index_writes(&db);
    let scheduler = db.session.scheduler();
    let job = submit_optimize(&db).await;
    until_running(&db, job.id).await;
    let rows = db.rows(&format!("CANCEL JOB {}", job.id)).await;
    assert_eq!(rows[0][3], "RUNNING");
    // The job ends while its index build is still held: it does not wait for the build.
    let done = tokio::time::timeout(Duration::from_secs(30), scheduler.wait(job.id))
        .await
        .expect("a cancelled optimisation ends without waiting for its build")
        .unwrap();
    assert_eq!(done.state, JobState::Cancelled, "{done:?}");
    gate.store(false, Ordering::SeqCst);
    assert_eq!(coverage(&db, "docs").await, (1, 50));
    let q = literal(&data[3 * DIM..4 * DIM]);
    let query = format!("SELECT id, embedding <-> {q} AS d FROM docs ORDER BY d LIMIT 5");
    assert_eq!(search(&db, &query).await.0[0], (3, 0.0));
    // Run again, it completes.
    db.sql("OPTIMIZE docs").await;
    assert_eq!(coverage(&db, "docs").await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimisation_interrupted_by_a_restart_is_resumed() {
    let (mut db, _) = indexed_collection("VECTOR", "hnsw (embedding vector_l2_ops)").await;
    insert(&db, ROWS + 1000, 30).await;
    // The process "dies" as the index files are written: they and every catalog write fail.
    let crashed = Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    db.hooks.set(Arc::new(move |op: StoreOp, path: &StorePath| {
        let write = !matches!(op, StoreOp::Get | StoreOp::List);
        if write && path.as_ref().contains("_indices") {
            flag.store(true, Ordering::SeqCst);
        }
        if flag.load(Ordering::SeqCst) && write {
            return Err("process died".to_string());
        }
        Ok(())
    }));
    let job = submit_optimize(&db).await;
    for _ in 0..400 {
        if crashed.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(crashed.load(Ordering::SeqCst));
    db.restart().await;
    let stuck = db.session.catalog().job(job.id).await.unwrap();
    assert_eq!(stuck.state, JobState::Running, "{stuck:?}");
    assert_eq!(coverage(&db, "docs").await, (1, 30));
    let scheduler = JobScheduler::new(
        db.session.catalog().clone(),
        SchedulerConfig {
            lease: Duration::ZERO,
            ..SchedulerConfig::default()
        },
    );
    assert_eq!(scheduler.recover().await.unwrap(), vec![job.id]);
    let done = scheduler.wait(job.id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(coverage(&db, "docs").await, (1, 0));
}
