//! Exact and index-backed k-NN on one thread.
//!
//! - `read`: one pass summing the 1M x 128 `f32` vectors (512 MB): the memory-bandwidth floor an
//!   exact scan is measured against;
//! - `exact/single_f32`, `exact/single_f16`: one query, k = 10, through `KnnExec` (f16 storage
//!   reads half the bytes);
//! - `exact/batch100_f32`: 100 queries, k = 10, through `BatchKnnExec` (one blocked matrix
//!   product per batch of rows);
//! - `exact/sql_f32`: the same query as `exact/single_f32` through SQL, over a collection of the
//!   same vectors (in 8 fragments) without an index, warm: the vectors loaded in memory;
//! - `index/hnsw`: k = 10 through SQL on a collection of clustered vectors with an IVF_HNSW_SQ
//!   index; the set-up prints the recall@10 against exact search at the `ef` used.
//!
//! `QUIVER_BENCH_ROWS` (default 1,000,000) sets the number of rows. Run with
//! `cargo bench -p quiver-benchmarks --bench knn`; `benchmarks/compare/run.sh` times the same
//! plans next to numpy, FAISS and hnswlib.

// Criterion's macros generate undocumented items; set-up code may fail loudly.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quiver_benchmarks::knn::{
    batch_query, f16_vector_array, f32_values, f32_vector_array, knn_sql, memory_plan, read_all,
    run, single_query, single_thread, sql_knn_ids,
};
use quiver_benchmarks::{collection, random_vectors, Clusters};

const DIM: usize = 128;
const K: usize = 10;

fn rows() -> usize {
    std::env::var("QUIVER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn exact(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = rows();
    let values = random_vectors(n, DIM, 1);
    let queries = random_vectors(100, DIM, 2);
    let ctx = single_thread();
    let f32_vectors = f32_vector_array(&values, DIM);
    let f32_plan = memory_plan(f32_vectors.clone());
    let f16_plan = memory_plan(f16_vector_array(&values, DIM));
    let single_f32 = single_query(&f32_plan, &queries[..DIM], K);
    let single_f16 = single_query(&f16_plan, &queries[..DIM], K);
    let batch100 = batch_query(&f32_plan, &queries, DIM, K);
    let (_dir, session) = runtime.block_on(collection(values.clone(), DIM, 8));
    runtime
        .block_on(session.run_script("SET datafusion.execution.target_partitions = 1"))
        .unwrap();
    let sql = knn_sql(&queries[..DIM], K);

    let mut group = c.benchmark_group("knn");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((n * DIM * 4) as u64));
    group.bench_function("read", |b| b.iter(|| read_all(f32_values(&f32_vectors))));
    group.bench_function("exact/single_f32", |b| {
        b.iter(|| runtime.block_on(run(&single_f32, &ctx)))
    });
    group.bench_function("exact/single_f16", |b| {
        b.iter(|| runtime.block_on(run(&single_f16, &ctx)))
    });
    group.bench_function("exact/batch100_f32", |b| {
        b.iter(|| runtime.block_on(run(&batch100, &ctx)))
    });
    group.bench_function("exact/sql_f32", |b| {
        b.iter(|| runtime.block_on(session.run_script(&sql)).unwrap())
    });
    group.finish();
}

fn index(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let n = rows();
    let clusters = Clusters::new(1000, DIM, 5);
    let values = clusters.sample(n, 5);
    let queries = clusters.sample(50, 6);
    let (_dir, session) = runtime.block_on(collection(values, DIM, 1));
    runtime
        .block_on(session.run_script(
            "CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops) \
             WITH (m = 16, ef_construction = 200)",
        ))
        .unwrap();
    let ef = 64;
    let set = |sql: &str| runtime.block_on(session.run_script(sql)).unwrap();
    let mut found = 0;
    for q in queries.chunks_exact(DIM) {
        set("SET quiver.use_index = false");
        let exact: HashSet<i64> = runtime
            .block_on(sql_knn_ids(&session, q, K))
            .into_iter()
            .collect();
        set(&format!(
            "SET quiver.use_index = true; SET quiver.ef = {ef}"
        ));
        let approx = runtime.block_on(sql_knn_ids(&session, q, K));
        found += approx.iter().filter(|id| exact.contains(id)).count();
    }
    println!(
        "index/hnsw: recall@{K} = {:.3} at ef = {ef} over {n} rows",
        found as f64 / (queries.len() / DIM * K) as f64
    );
    let mut group = c.benchmark_group("knn");
    group.sample_size(20);
    let mut i = 0;
    group.bench_function("index/hnsw", |b| {
        b.iter(|| {
            let q = &queries[(i % 50) * DIM..(i % 50 + 1) * DIM];
            i += 1;
            runtime
                .block_on(session.run_script(&knn_sql(q, K)))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, exact, index);
criterion_main!(benches);
