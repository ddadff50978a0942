//! Snapshots and jobs: snapshot creation at 1,000 and 100,000 fragments (it must not grow with
//! the data: O(metadata)), restore copy throughput against a plain copy of the same files on the
//! same disk (as a byte copy and as a hard link: on a local disk the store's copy is a link),
//! zero-copy restore, and a garbage collection pass over 100,000 files.
//!
//! The large setups take a while (writing 100,000 one-row fragments); run with
//! `cargo bench -p quiver-benchmarks --bench jobs`.

// Criterion's macros generate undocumented items.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quiver_catalog::JobState;
use quiver_planner::QuiverSession;

const DIM: usize = 16;

/// A session over a fresh root with collection `docs` of `rows` rows in `fragments` fragments.
async fn collection(rows: usize, fragments: usize) -> (tempfile::TempDir, QuiverSession) {
    quiver_benchmarks::collection(
        quiver_benchmarks::random_vectors(rows, DIM, 3),
        DIM,
        fragments,
    )
    .await
}

async fn restore(session: &QuiverSession, sql: &str) -> Duration {
    let start = Instant::now();
    let batches = session.run_script(sql).await.expect("restore");
    let id = arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt64Type>(
        batches[0][0].column(0),
    )
    .value(0);
    let job = session.scheduler().wait(id).await.expect("wait");
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    start.elapsed()
}

fn snapshots(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("snapshot_create");
    group.sample_size(10);
    for fragments in [1_000usize, 100_000] {
        let (_dir, session) = runtime.block_on(collection(fragments, fragments));
        let mut n = 0u64;
        group.bench_function(BenchmarkId::from_parameter(fragments), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let start = Instant::now();
                        session
                            .run_script(&format!("CREATE SNAPSHOT s{n} ON docs"))
                            .await
                            .expect("snapshot");
                        total += start.elapsed();
                        session
                            .run_script(&format!("DROP SNAPSHOT s{n} ON docs"))
                            .await
                            .expect("drop");
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

fn restores(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // 1M x 16 f32 = 64 MiB in 64 files.
    let (dir, session) = runtime.block_on(collection(1 << 20, 64));
    runtime
        .block_on(session.run_script("CREATE SNAPSHOT s ON docs"))
        .expect("snapshot");
    let bytes: u64 = walk(&dir.path().join("collections"))
        .iter()
        .map(|p| p.1)
        .sum();
    let mut group = c.benchmark_group("restore");
    group.sample_size(10).throughput(Throughput::Bytes(bytes));
    let mut n = 0u64;
    group.bench_function("copy", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    total +=
                        restore(&session, &format!("RESTORE SNAPSHOT s ON docs TO r{n}")).await;
                    session
                        .run_script(&format!("DROP TABLE r{n}"))
                        .await
                        .expect("drop");
                }
                total
            })
        })
    });
    group.bench_function("zero_copy", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    total += restore(
                        &session,
                        &format!("RESTORE SNAPSHOT s ON docs TO r{n} WITH (mode = 'zero_copy')"),
                    )
                    .await;
                    session
                        .run_script(&format!("DROP TABLE r{n}"))
                        .await
                        .expect("drop");
                }
                total
            })
        })
    });
    // The baselines: the same files put in place by the file system itself, as a byte copy and
    // as a hard link (what the local object store's server-side copy is).
    let files = walk(&dir.path().join("collections"));
    let baselines: [(&str, PlaceFile); 2] = [
        ("plain_file_copy", |from, to| {
            std::fs::copy(from, to).map(drop)
        }),
        ("plain_hard_link", |from, to| std::fs::hard_link(from, to)),
    ];
    for (name, place) in baselines {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let target = dir.path().join(format!("{name}{i}"));
                    std::fs::create_dir_all(&target).expect("dir");
                    let start = Instant::now();
                    for (j, (path, _)) in files.iter().enumerate() {
                        place(path, &target.join(j.to_string())).expect("copy");
                    }
                    total += start.elapsed();
                    std::fs::remove_dir_all(&target).expect("clean");
                }
                total
            })
        });
    }
    group.finish();
}

/// Puts a file at a new path: a copy or a link.
type PlaceFile = fn(&std::path::Path, &std::path::Path) -> std::io::Result<()>;

fn walk(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else if let Ok(meta) = entry.metadata() {
                out.push((path, meta.len()));
            }
        }
    }
    out
}

fn garbage_collection(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_dir, session) = runtime.block_on(collection(100_000, 100_000));
    let mut group = c.benchmark_group("gc");
    group.sample_size(10);
    group.bench_function("vacuum_dry_run_100k_files", |b| {
        b.iter(|| {
            runtime
                .block_on(session.run_script("VACUUM DRY RUN WITH (grace_seconds = 0)"))
                .expect("vacuum")
        })
    });
    group.finish();
}

criterion_group!(benches, snapshots, restores, garbage_collection);
criterion_main!(benches);
