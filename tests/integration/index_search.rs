//! Index-backed k-NN searched directly (without Lance's scanner) where the index alone answers,
//! an HNSW index by Quiver's graph search over a copy loaded in memory, and through the scanner
//! where the index alone cannot answer: the same answers every way.

use std::collections::{HashMap, HashSet};

use quiver_tests::TestDb;

pub(crate) const DIM: usize = 16;
pub(crate) const ROWS: usize = 3_000;
const K: usize = 10;

/// Deterministic vectors in [-1, 1), row-major (a linear congruential generator).
pub(crate) fn vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n * DIM)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub(crate) fn literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// `docs (id, embedding <vector_type>(DIM))` with [`ROWS`] rows and an index `USING <using>`.
pub(crate) async fn indexed_collection(vector_type: &str, using: &str) -> (TestDb, Vec<f32>) {
    let db = TestDb::new().await;
    db.sql(&format!(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, embedding {vector_type}({DIM}))"
    ))
    .await;
    let data = vectors(ROWS, 1);
    for start in (0..ROWS).step_by(500) {
        let values: Vec<String> = (start..start + 500)
            .map(|i| format!("({i}, {})", literal(&data[i * DIM..(i + 1) * DIM])))
            .collect();
        db.sql(&format!("INSERT INTO docs VALUES {}", values.join(", ")))
            .await;
    }
    db.sql(&format!("CREATE INDEX ON docs USING {using}")).await;
    (db, data)
}

/// The rows `(id, distance)` of `query`.
pub(crate) async fn id_distances(db: &TestDb, query: &str) -> Vec<(i64, f64)> {
    db.rows(query)
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect()
}

/// Which way an index search went, from `EXPLAIN ANALYZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Lance's scanner.
    Scanner,
    /// Lance's index, searched directly.
    Direct,
    /// Quiver's graph search over the index loaded in memory.
    Loaded,
}

/// The counter `name` of `plan`'s IndexKnnExec.
pub(crate) fn counter(plan: &str, name: &str) -> u64 {
    plan.split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .map(|n| n.parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} in: {plan}"))
}

/// The rows `(id, distance)` of `query`, and the way its index search went.
pub(crate) async fn search(db: &TestDb, query: &str) -> (Vec<(i64, f64)>, Path) {
    (id_distances(db, query).await, path(db, query).await)
}

/// The text of `EXPLAIN ANALYZE query`.
pub(crate) async fn analyzed(db: &TestDb, query: &str) -> String {
    db.rows(&format!("EXPLAIN ANALYZE {query}"))
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The way `query`'s index search went.
pub(crate) async fn path(db: &TestDb, query: &str) -> Path {
    let plan = analyzed(db, query).await;
    match (
        counter(&plan, "direct_index_searches"),
        counter(&plan, "loaded_index_searches"),
    ) {
        (0, 0) => Path::Scanner,
        (1, 0) => Path::Direct,
        (1, 1) => Path::Loaded,
        other => panic!("searched {other:?} times: {plan}"),
    }
}

/// The exact answer, with the index switched off.
pub(crate) async fn exact(db: &TestDb, query: &str) -> Vec<(i64, f64)> {
    db.sql("SET quiver.use_index = false").await;
    let rows = id_distances(db, query).await;
    db.sql("SET quiver.use_index = true").await;
    rows
}

/// Searches 20 queries near rows of `data` with `function`; checks each went `path`, its
/// distances are the exact ones, and the recall against exact search, which it returns.
async fn searches_directly(db: &TestDb, data: &[f32], function: &str, path: Path) -> f64 {
    let queries = vectors(20, 2);
    let (mut found, mut wanted) = (0, 0);
    for (i, noise) in queries.chunks_exact(DIM).enumerate() {
        let row = (i * 131) % ROWS;
        let q: Vec<f32> = data[row * DIM..(row + 1) * DIM]
            .iter()
            .zip(noise)
            .map(|(v, n)| v + 0.05 * n)
            .collect();
        let query = format!(
            "SELECT id, {function}(embedding, {}) AS d FROM docs ORDER BY d LIMIT {K}",
            literal(&q)
        );
        let (rows, went) = search(db, &query).await;
        assert_eq!(went, path, "{query}");
        assert_eq!(rows.len(), K);
        let truth: HashMap<i64, f64> = exact(db, &query).await.into_iter().collect();
        for window in rows.windows(2) {
            assert!(window[0].1 <= window[1].1, "not in order: {rows:?}");
        }
        for (id, d) in &rows {
            if let Some(t) = truth.get(id) {
                assert!((d - t).abs() < 1e-4, "id {id}: {d} where exact says {t}");
            }
        }
        wanted += K;
        found += rows.iter().filter(|(id, _)| truth.contains_key(id)).count();
    }
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.9, "recall@{K} = {recall}");
    recall
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfiltered_search_of_a_fully_indexed_collection_goes_straight_to_the_index() {
    let (db, data) = indexed_collection("VECTOR", "hnsw (embedding vector_l2_ops)").await;
    searches_directly(&db, &data, "l2_distance", Path::Loaded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_search_re_ranks_refine_factor_times_k_candidates() {
    let (db, data) = indexed_collection("VECTOR", "hnsw (embedding vector_l2_ops)").await;
    // A narrow search: the index's quantized distances alone miss some of the nearest rows.
    db.sql("SET quiver.ef = 10").await;
    // k * refine_factor covers every row, and the candidates are re-ranked by exact distance:
    // the answer is exact.
    db.sql(&format!("SET quiver.refine_factor = {}", ROWS / K))
        .await;
    let recall = searches_directly(&db, &data, "l2_distance", Path::Loaded).await;
    assert_eq!(recall, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosine_and_half_precision_indices_are_searched_directly_too() {
    let (db, data) = indexed_collection(
        "HALFVEC",
        "IVF_HNSW_SQ (embedding) WITH (metric = 'cosine', num_partitions = 2)",
    )
    .await;
    db.sql("SET quiver.nprobes = 2").await;
    searches_directly(&db, &data, "cosine_distance", Path::Loaded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_product_index_is_searched_loaded_with_exact_distances() {
    let (db, data) = indexed_collection(
        "VECTOR",
        "IVF_HNSW_SQ (embedding) WITH (metric = 'dot', num_partitions = 1)",
    )
    .await;
    searches_directly(&db, &data, "negative_inner_product", Path::Loaded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_index_follows_deletes_updates_and_appends() {
    let (db, data) = indexed_collection("VECTOR", "hnsw (embedding vector_l2_ops)").await;
    // Wide enough that the top 3 are the exact ones.
    db.sql("SET quiver.ef = 400").await;
    let q = literal(&data[7 * DIM..8 * DIM]);
    let query = format!("SELECT id, embedding <-> {q} AS d FROM docs ORDER BY d LIMIT 3");
    let (rows, path) = search(&db, &query).await;
    assert_eq!((rows[0].0, path), (7, Path::Loaded), "{rows:?}");
    db.sql("CREATE SNAPSHOT before ON docs").await;

    // A deleted row: passed over, never returned.
    db.sql("DELETE FROM docs WHERE id = 7").await;
    let (rows, path) = search(&db, &query).await;
    assert_eq!(path, Path::Loaded);
    assert_eq!(rows, exact(&db, &query).await);
    assert!(rows.iter().all(|(id, _)| *id != 7), "{rows:?}");

    // A row written after the index was built, and a row updated: held beside the index and
    // searched exactly.
    db.sql(&format!("INSERT INTO docs VALUES (100000, {q})"))
        .await;
    db.sql(&format!("UPDATE docs SET embedding = {q} WHERE id = 8"))
        .await;
    let (rows, path) = search(&db, &query).await;
    assert_eq!(path, Path::Loaded);
    assert_eq!(rows, exact(&db, &query).await);
    let nearest: HashSet<(i64, u64)> = rows[..2].iter().map(|(id, d)| (*id, d.to_bits())).collect();
    assert_eq!(nearest, HashSet::from([(8, 0), (100000, 0)]), "{rows:?}");
    let plan = analyzed(&db, &query).await;
    assert_eq!(counter(&plan, "rows_outside_index"), 2, "{plan}");

    // The snapshot still holds exactly its rows.
    let pinned = query.replace("FROM docs", "FROM snapshot('docs', 'before')");
    let (rows, path) = search(&db, &pinned).await;
    assert_eq!(path, Path::Loaded);
    assert_eq!(rows[0], (7, 0.0));
    assert_eq!(rows, exact(&db, &pinned).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_search_of_a_loaded_index_returns_k_matching_rows() {
    let (db, data) = indexed_collection("VECTOR", "hnsw (embedding vector_l2_ops)").await;
    db.sql("SET quiver.ef = 20").await;
    db.sql("DELETE FROM docs WHERE id % 11 = 0").await;
    db.sql(&format!(
        "INSERT INTO docs VALUES (100000, {}), (100002, {})",
        literal(&data[..DIM]),
        literal(&data[DIM..2 * DIM])
    ))
    .await;
    let q = literal(&data[..DIM]);
    // 50% of the rows: the graph walked (a beam of 20 keeps 20 matching rows); 10% and 1%:
    // every matching row scored.
    for (filter, graph) in [
        ("id % 2 = 0", true),
        ("id % 10 = 2", false),
        ("id < 30 OR id = 100000", false),
    ] {
        let query = format!(
            "SELECT id, embedding <-> {q} AS d FROM docs WHERE {filter} ORDER BY d LIMIT {K}"
        );
        let (rows, path) = search(&db, &query).await;
        assert_eq!(path, Path::Loaded, "{filter}");
        assert_eq!(rows.len(), K, "{filter}: {rows:?}");
        let truth = exact(&db, &query).await;
        let plan = analyzed(&db, &query).await;
        assert_eq!(counter(&plan, "filtered_graph_searches"), u64::from(graph));
        assert_eq!(counter(&plan, "filtered_exact_searches"), u64::from(!graph));
        let ids: HashSet<i64> = truth.iter().map(|(id, _)| *id).collect();
        if graph {
            let found = rows.iter().filter(|(id, _)| ids.contains(id)).count();
            assert!(found >= 8, "{filter}: {rows:?} where exact says {truth:?}");
        } else {
            assert_eq!(rows, truth, "{filter}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scanner_answers_what_an_index_not_loaded_cannot_alone() {
    let (db, data) = indexed_collection(
        "VECTOR",
        "IVF_PQ (embedding) WITH (num_partitions = 2, num_sub_vectors = 4)",
    )
    .await;
    db.sql("SET quiver.nprobes = 2").await;
    let q = literal(&data[7 * DIM..8 * DIM]);
    let query = format!("SELECT id, embedding <-> {q} AS d FROM docs ORDER BY d LIMIT 3");

    // A filter: Lance pre-filters.
    let filtered = query.replace("ORDER BY", "WHERE id <> 7 ORDER BY");
    let (rows, went) = search(&db, &filtered).await;
    assert_eq!(went, Path::Scanner);
    assert!(rows.iter().all(|(id, _)| *id != 7), "{rows:?}");

    // A deleted row: the index still holds it, the scanner masks it.
    assert_eq!(path(&db, &query).await, Path::Direct);
    db.sql("DELETE FROM docs WHERE id = 7").await;
    let (rows, path) = search(&db, &query).await;
    assert_eq!(path, Path::Scanner);
    assert!(rows.iter().all(|(id, _)| *id != 7), "{rows:?}");

    // A row written after the index was built: not in the index, searched exactly.
    db.sql(&format!("INSERT INTO docs VALUES (100000, {q})"))
        .await;
    let (rows, path) = search(&db, &query).await;
    assert_eq!(path, Path::Scanner);
    assert_eq!(rows[0], (100000, 0.0), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_other_than_hnsw_is_searched_directly_through_lance() {
    let (db, data) = indexed_collection(
        "VECTOR",
        "IVF_PQ (embedding) WITH (num_partitions = 2, num_sub_vectors = 4)",
    )
    .await;
    db.sql("SET quiver.nprobes = 2").await;
    db.sql("SET quiver.refine_factor = 5").await;
    searches_directly(&db, &data, "l2_distance", Path::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_search_returns_every_projected_column_of_its_rows() {
    let db = TestDb::new().await;
    db.sql(&format!(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title TEXT, score DOUBLE, \
         embedding VECTOR({DIM}))"
    ))
    .await;
    let data = vectors(ROWS, 3);
    for start in (0..ROWS).step_by(500) {
        let values: Vec<String> = (start..start + 500)
            .map(|i| {
                let v = &data[i * DIM..(i + 1) * DIM];
                format!("({i}, 'doc {i}', {}, {})", i as f64 / 2.0, literal(v))
            })
            .collect();
        db.sql(&format!("INSERT INTO docs VALUES {}", values.join(", ")))
            .await;
    }
    db.sql("CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops)")
        .await;
    for row in [0, 1234, ROWS - 1] {
        let v = &data[row * DIM..(row + 1) * DIM];
        let query = format!(
            "SELECT id, embedding <-> {q} AS d, title, score, embedding FROM docs \
             ORDER BY d LIMIT 3",
            q = literal(v)
        );
        assert_eq!(path(&db, &query).await, Path::Loaded);
        let rows = db.rows(&query).await;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0], row.to_string(), "{rows:?}");
        for r in &rows {
            let id: usize = r[0].parse().unwrap();
            // A text column and a number (both loaded beside the index) belong to the row found,
            // and so does its vector.
            assert_eq!(r[2], format!("doc {id}"));
            assert_eq!(r[3].parse::<f64>().unwrap(), id as f64 / 2.0);
            let stored: Vec<f32> = r[4]
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|x| x.trim().parse().unwrap())
                .collect();
            // Printed to four decimals.
            let expected = &data[id * DIM..(id + 1) * DIM];
            let off = stored.iter().zip(expected).map(|(a, b)| (a - b).abs());
            assert!(
                off.fold(0.0, f32::max) <= 1e-4,
                "{stored:?} for {expected:?}"
            );
        }
        // No column but the distance.
        let query = format!(
            "SELECT embedding <-> {q} AS d FROM docs ORDER BY d LIMIT 3",
            q = literal(v)
        );
        assert_eq!(path(&db, &query).await, Path::Loaded);
        let distances = db.rows(&query).await;
        assert_eq!(distances.len(), 3);
        assert_eq!(
            distances[0][0].parse::<f64>().unwrap(),
            0.0,
            "{distances:?}"
        );
    }
    // A filter on the text column, evaluated over it loaded beside the index.
    let q = literal(&data[..DIM]);
    let query = format!(
        "SELECT id, embedding <-> {q} AS d FROM docs WHERE title LIKE 'doc 1%' ORDER BY d LIMIT {K}"
    );
    let (rows, went) = search(&db, &query).await;
    assert_eq!(went, Path::Loaded);
    assert_eq!(rows, exact(&db, &query).await);
    assert!(
        rows.iter().all(|(id, _)| id.to_string().starts_with('1')),
        "{rows:?}"
    );
    let plan = analyzed(&db, &query).await;
    assert_eq!(counter(&plan, "filtered_exact_searches"), 1, "{plan}");
}
