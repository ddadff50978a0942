//! The side-by-side comparison (`benchmarks/compare/run.sh`): generates the data
//! deterministically, times Quiver's k-NN on it, has `benchmarks/compare/peers.py` time numpy,
//! FAISS and hnswlib on the same files in the same run, and prints one table of figures and
//! ratios. Everything runs on one thread.

// A benchmark driver: a failure should stop the run loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use quiver_benchmarks::knn::{
    batch_query, f16_vector_array, f32_values, f32_vector_array, index_plan, int64_column,
    kernel_only, lance_index_search, memory_plan, open_lance_index, read_all, run, run_in,
    single_query, single_thread, sql_knn_ids,
};
use quiver_benchmarks::{collection, random_vectors, vector_array, Clusters};

const DIM: usize = 128;
const K: usize = 10;
/// Rows and queries of the index comparison (hnswlib's build of 200k x 128 takes ~25 s here).
const INDEX_ROWS: usize = 200_000;
const INDEX_QUERIES: usize = 200;
/// The `ef` values both HNSW implementations are swept over (from 10, = k, as ann-benchmarks'
/// hnswlib sweep starts).
const EF_SWEEP: [usize; 7] = [10, 16, 32, 64, 128, 256, 512];
/// Timed passes over the queries at each point of an `ef` sweep (the median is reported).
const SWEEP_PASSES: usize = 5;
/// The recalls@10 the index comparison is made at: the 0.95, and 0.99, where
/// applications that re-rank nothing after the index tend to run.
const TARGET_RECALLS: [f64; 2] = [0.95, 0.99];

/// Command line.
#[derive(Parser)]
struct Args {
    /// A scratch directory for the data files.
    #[arg(long)]
    work: PathBuf,
    /// The Python interpreter with numpy, faiss-cpu and hnswlib.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Rows of the exact-search data.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
}

/// Writes a row-major matrix as a NumPy `.npy` file (`<f4` or `<i8`).
fn write_npy(path: &Path, descr: &str, rows: usize, cols: usize, bytes: &[u8]) {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.write_all(bytes).unwrap();
}

fn write_f32(path: &Path, values: &[f32], cols: usize) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(path, "<f4", values.len() / cols, cols, &bytes);
}

/// The median of `repeat` timings of `f`, in seconds.
fn median_time(repeat: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One sweep point of an HNSW search.
struct SweepPoint {
    ef: usize,
    recall: f64,
    qps: f64,
}

/// The fastest point of `sweep` that reaches `target` recall.
fn at_target(sweep: &[SweepPoint], target: f64) -> Option<&SweepPoint> {
    sweep
        .iter()
        .filter(|p| p.recall >= target)
        .max_by(|a, b| a.qps.total_cmp(&b.qps))
}

fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Exact search: random 128-d vectors, 100 queries.
    eprintln!("generating {} x {DIM} vectors...", args.rows);
    let base = random_vectors(args.rows, DIM, 1);
    let queries = random_vectors(100, DIM, 2);
    write_f32(&args.work.join("base.npy"), &base, DIM);
    write_f32(&args.work.join("queries.npy"), &queries, DIM);
    let ctx = single_thread();
    // In memory advised for huge pages, as NumPy's arrays are (see `quiver_benchmarks::memory`).
    let f32_vectors = f32_vector_array(&base, DIM);
    let f32_plan = memory_plan(f32_vectors.clone());
    let f16_plan = memory_plan(f16_vector_array(&base, DIM));
    let single_f32 = single_query(&f32_plan, &queries[..DIM], K);
    let single_f16 = single_query(&f16_plan, &queries[..DIM], K);
    let batch100 = batch_query(&f32_plan, &queries, DIM, K);
    eprintln!("timing Quiver's exact search...");
    let read = median_time(5, || {
        std::hint::black_box(read_all(f32_values(&f32_vectors)));
    });
    let kernel = median_time(5, || {
        std::hint::black_box(kernel_only(&queries[..DIM], f32_values(&f32_vectors), DIM));
    });
    let exact_f32 = median_time(5, || {
        runtime.block_on(run(&single_f32, &ctx));
    });
    let exact_f16 = median_time(5, || {
        runtime.block_on(run(&single_f16, &ctx));
    });
    let exact_batch = median_time(3, || {
        runtime.block_on(run(&batch100, &ctx));
    });
    drop((
        f32_plan,
        f16_plan,
        single_f32,
        single_f16,
        batch100,
        base,
        f32_vectors,
    ));

    // Index search: clustered vectors, exact ground truth from the batched exact search.
    eprintln!("building the index data ({INDEX_ROWS} x {DIM})...");
    let clusters = Clusters::new(1000, DIM, 5);
    let clustered = clusters.sample(INDEX_ROWS, 5);
    let clustered_queries = clusters.sample(INDEX_QUERIES, 6);
    let truth_plan = batch_query(
        &memory_plan(Arc::new(vector_array(clustered.clone(), DIM))),
        &clustered_queries,
        DIM,
        K,
    );
    // Output columns: query_index, id, v, distance.
    let truth = int64_column(&runtime.block_on(run(&truth_plan, &ctx)), 1);
    let truth_bytes: Vec<u8> = truth.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_f32(&args.work.join("clustered.npy"), &clustered, DIM);
    write_f32(
        &args.work.join("clustered_queries.npy"),
        &clustered_queries,
        DIM,
    );
    write_npy(
        &args.work.join("clustered_gt.npy"),
        "<i8",
        INDEX_QUERIES,
        K,
        &truth_bytes,
    );
    eprintln!("building Quiver's HNSW index...");
    let (_dir, session) = runtime.block_on(collection(clustered, DIM, 1));
    let start = Instant::now();
    runtime
        .block_on(session.run_script(
            "CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops) \
             WITH (m = 16, ef_construction = 200)",
        ))
        .unwrap();
    let quiver_build = start.elapsed().as_secs_f64();
    // Through SQL (parse, plan, search: the path users take) and through the search operator
    // alone (`IndexKnnExec` built and run per query, no SQL): where the time goes.
    let record = runtime
        .block_on(session.catalog().collection("default", "docs"))
        .unwrap();
    let dataset = Arc::new(
        runtime
            .block_on(session.catalog().open_dataset(&record, None))
            .unwrap(),
    );
    let sweep = |search: &dyn Fn(&[f32], usize) -> Vec<i64>| -> Vec<SweepPoint> {
        EF_SWEEP
            .iter()
            .map(|&ef| {
                let mut found = 0;
                for (i, q) in clustered_queries.chunks_exact(DIM).enumerate() {
                    let ids = search(q, ef);
                    let exact: HashSet<i64> = truth[i * K..(i + 1) * K].iter().copied().collect();
                    found += ids.iter().filter(|id| exact.contains(id)).count();
                }
                // Timed apart from the pass above, which loads what the first search needs.
                let pass = median_time(SWEEP_PASSES, || {
                    for q in clustered_queries.chunks_exact(DIM) {
                        std::hint::black_box(search(q, ef));
                    }
                });
                SweepPoint {
                    ef,
                    recall: found as f64 / (INDEX_QUERIES * K) as f64,
                    qps: INDEX_QUERIES as f64 / pass,
                }
            })
            .collect()
    };
    let session_ef = std::cell::Cell::new(0);
    let quiver_sweep = sweep(&|q, ef| {
        runtime.block_on(async {
            if session_ef.replace(ef) != ef {
                session
                    .run_script(&format!("SET quiver.ef = {ef}"))
                    .await
                    .unwrap();
            }
            sql_knn_ids(&session, q, K).await
        })
    });
    let task = ctx.task_ctx();
    let operator_sweep = sweep(&|q, ef| {
        let plan = index_plan(&dataset, q, K, ef);
        int64_column(&runtime.block_on(run_in(&plan, task.clone())), 0)
    });
    // Lance's index alone: no scanner, no take of the rows. The collection is one fragment with
    // ids from 0, so a row id is the row's id.
    let lance_index = runtime.block_on(open_lance_index(&dataset, "embedding"));
    let lance_sweep = sweep(&|q, ef| {
        let rows = runtime.block_on(lance_index_search(
            lance_index.as_ref(),
            "embedding",
            q,
            K,
            ef,
            1,
        ));
        rows.into_iter().map(|r| r as i64).collect()
    });

    eprintln!("timing the peers...");
    // The package's directory as `cargo run` gives it, where it is run that way: cargo does not
    // rebuild when the checkout moves, and the path compiled in would be the old checkout's.
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let output = std::process::Command::new(&args.python)
        .arg(package.join("compare/peers.py"))
        .arg(&args.work)
        .arg(EF_SWEEP.map(|ef| ef.to_string()).join(","))
        .arg(SWEEP_PASSES.to_string())
        .output()
        .unwrap();
    if !output.status.success() {
        panic!(
            "peers.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let peers: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let peer = |key: &str| peers[key].as_f64().unwrap_or(f64::NAN);
    let hnswlib_sweep: Vec<SweepPoint> = peers["hnswlib_sweep"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .map(|p| SweepPoint {
                    ef: p["ef"].as_u64().unwrap_or(0) as usize,
                    recall: p["recall"].as_f64().unwrap_or(0.0),
                    qps: p["qps"].as_f64().unwrap_or(0.0),
                })
                .collect()
        })
        .unwrap_or_default();

    let ms = |s: f64| format!("{:.1} ms", s * 1e3);
    println!(
        "\nQuiver vs peers, one thread, {} x {DIM} f32 (exact), {INDEX_ROWS} x {DIM} clustered (index), k = {K}\n",
        args.rows
    );
    println!("| measurement | Quiver | peer | ratio (Quiver / peer) |");
    println!("|---|---|---|---|");
    let row = |name: &str, ours: f64, peer_name: &str, theirs: f64| {
        println!(
            "| {name} | {} | {peer_name} {} | {:.2}x |",
            ms(ours),
            ms(theirs),
            ours / theirs
        );
    };
    row(
        "read the vectors (sum)",
        read,
        "numpy sum",
        peer("numpy_read_s"),
    );
    row(
        "exact, 1 query, f32",
        exact_f32,
        "FAISS IndexFlatL2",
        peer("faiss_flat_single_s"),
    );
    // The floor is the fastest plain read of the vectors measured in this run.
    let (floor_name, floor) = if read <= peer("numpy_read_s") {
        ("Quiver read", read)
    } else {
        ("numpy sum", peer("numpy_read_s"))
    };
    row(
        "exact, 1 query, f32 (vs the fastest read)",
        exact_f32,
        floor_name,
        floor,
    );
    row(
        "exact, 1 query, f32: the distance kernel alone",
        kernel,
        floor_name,
        floor,
    );
    row(
        "exact, 1 query, f16 (vs f32)",
        exact_f16,
        "Quiver f32",
        exact_f32,
    );
    row(
        "exact, 1 query, f32",
        exact_f32,
        "numpy matmul",
        peer("numpy_single_s"),
    );
    row(
        "exact, 100 queries, f32",
        exact_batch,
        "FAISS IndexFlatL2",
        peer("faiss_flat_batch100_s"),
    );
    println!(
        "| HNSW build (M=16, ef_construction=200) | {:.1} s | hnswlib {:.1} s | {:.2}x |",
        quiver_build,
        peer("hnswlib_build_s"),
        quiver_build / peer("hnswlib_build_s")
    );
    for target in TARGET_RECALLS {
        for (path, sweep) in [
            ("through SQL", &quiver_sweep),
            ("IndexKnnExec alone", &operator_sweep),
            ("Lance's index search alone", &lance_sweep),
        ] {
            match (at_target(sweep, target), at_target(&hnswlib_sweep, target)) {
                (Some(q), Some(h)) => println!(
                    "| HNSW QPS at recall@{K} >= {target} (Quiver {path}) | {:.0} (ef {}, recall {:.3}) | hnswlib {:.0} (ef {}, recall {:.3}) | {:.2}x |",
                    q.qps, q.ef, q.recall, h.qps, h.ef, h.recall, q.qps / h.qps
                ),
                (q, h) => println!(
                    "| HNSW QPS at recall@{K} >= {target} (Quiver {path}) | {} | hnswlib {} | - |",
                    q.map_or("not reached".to_string(), |p| format!("{:.0}", p.qps)),
                    h.map_or("not reached".to_string(), |p| format!("{:.0}", p.qps)),
                ),
            }
        }
    }
    println!("\nHNSW sweeps (ef: recall, QPS):");
    for (name, sweep) in [
        ("Quiver through SQL", &quiver_sweep),
        ("Quiver IndexKnnExec alone", &operator_sweep),
        ("Lance's index search alone", &lance_sweep),
        ("hnswlib", &hnswlib_sweep),
    ] {
        let points: Vec<String> = sweep
            .iter()
            .map(|p| format!("{}: {:.3}, {:.0}", p.ef, p.recall, p.qps))
            .collect();
        println!("- {name}: {}", points.join("; "));
    }
}
