//! Exact k-NN through SQL reads the collection's vectors loaded in memory: the same rows, the
//! same distances and the same order of ties as a brute-force search of the version's rows,
//! with filters, NULL vectors, deletes, appends and snapshots.

use quiver_tests::TestDb;

use crate::index_search::{analyzed, counter};

const DIM: usize = 4;

/// A row as the test wrote it.
#[derive(Clone)]
struct Row {
    id: i64,
    category: i64,
    vector: Option<[i64; DIM]>,
}

/// `count` rows from id `first`, with coarse values (many equal distances) and one NULL
/// vector in eleven (a linear congruential generator seeded by `first`).
fn rows(first: i64, count: i64) -> Vec<Row> {
    let mut state = (first as u64).wrapping_mul(6364136223846793005) | 1;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % n) as i64
    };
    (first..first + count)
        .map(|id| Row {
            id,
            category: next(4),
            vector: (next(11) != 0).then(|| std::array::from_fn(|_| next(5) - 2)),
        })
        .collect()
}

async fn insert(db: &TestDb, rows: &[Row]) {
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            let vector = r.vector.map_or("NULL".to_string(), |v| format!("{v:?}"));
            format!("({}, {}, {vector})", r.id, r.category)
        })
        .collect();
    db.sql(&format!("INSERT INTO docs VALUES {}", values.join(", ")))
        .await;
}

/// The squared L2 distance, exact in integers.
fn squared_l2(a: &[i64; DIM], b: &[i64; DIM]) -> i64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The `k` rows of `rows` (in the collection's order) nearest `query` by L2 that `admits`
/// admits, as `(id, distance)`: nearest first, equal distances in the collection's order, rows
/// without a vector last.
fn brute_force(
    rows: &[Row],
    query: &[i64; DIM],
    k: usize,
    admits: impl Fn(&Row) -> bool,
) -> Vec<(i64, Option<f64>)> {
    let mut found: Vec<(i64, Option<i64>)> = rows
        .iter()
        .filter(|r| admits(r))
        .map(|r| (r.id, r.vector.map(|v| squared_l2(&v, query))))
        .collect();
    found.sort_by_key(|(_, d)| d.unwrap_or(i64::MAX));
    found.truncate(k);
    found
        .into_iter()
        .map(|(id, d)| (id, d.map(|d| (d as f64).sqrt())))
        .collect()
}

/// The rows `(id, distance)` of `sql`, and how many of its exact searches read loaded vectors.
async fn search(db: &TestDb, sql: &str) -> (Vec<(i64, Option<f64>)>, u64) {
    let found = db
        .rows(sql)
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().ok()))
        .collect();
    let plan = analyzed(db, sql).await;
    assert!(plan.contains("KnnExec"), "{plan}");
    (found, counter(&plan, "loaded_vector_searches"))
}

fn assert_same(found: &[(i64, Option<f64>)], expected: &[(i64, Option<f64>)], sql: &str) {
    let ids = |rows: &[(i64, Option<f64>)]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(ids(found), ids(expected), "{sql}");
    for ((_, got), (_, want)) in found.iter().zip(expected) {
        match (got, want) {
            (Some(got), Some(want)) => assert!((got - want).abs() < 1e-4, "{sql}: {got} {want}"),
            (got, want) => assert_eq!(got.is_some(), want.is_some(), "{sql}"),
        }
    }
}

fn query_sql(table: &str, query: &[i64; DIM], filter: &str, k: usize) -> String {
    format!("SELECT id, l2_distance(v, {query:?}) AS d FROM {table} {filter} ORDER BY d LIMIT {k}")
}

/// Searches `table` (whose rows are `rows`, in order) with and without a filter, each search
/// equal to a brute-force search and reading loaded vectors.
async fn check(db: &TestDb, table: &str, rows: Vec<Row>) {
    for query in &[[0, 0, 0, 0], [2, -1, 1, 0], [-2, 2, -2, 2]] {
        for k in [1, 10, 40] {
            let sql = query_sql(table, query, "", k);
            let (found, loaded) = search(db, &sql).await;
            assert_same(&found, &brute_force(&rows, query, k, |_| true), &sql);
            assert_eq!(loaded, 1, "{sql}");
            let sql = query_sql(table, query, "WHERE category = 1 AND id % 3 <> 0", k);
            let (found, loaded) = search(db, &sql).await;
            let admits = |r: &Row| r.category == 1 && r.id % 3 != 0;
            assert_same(&found, &brute_force(&rows, query, k, admits), &sql);
            assert_eq!(loaded, 1, "{sql}");
        }
    }
}

#[tokio::test]
async fn exact_search_reads_loaded_vectors_and_equals_a_brute_force_search() {
    let db = TestDb::new().await;
    db.sql(&format!(
        "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, category BIGINT, v VECTOR({DIM}))"
    ))
    .await;
    let mut live: Vec<Row> = Vec::new();
    for first in [0, 300, 600] {
        let batch = rows(first, 300);
        insert(&db, &batch).await;
        live.extend(batch);
    }
    check(&db, "docs", live.clone()).await;

    // A snapshot, then deletes and an append: the live collection and the snapshot each see
    // their own rows.
    db.sql("CREATE SNAPSHOT before_delete ON docs").await;
    let snapshot = live.clone();
    db.sql("DELETE FROM docs WHERE id % 7 = 0 OR id BETWEEN 300 AND 340")
        .await;
    live.retain(|r| !(r.id % 7 == 0 || (300..=340).contains(&r.id)));
    let appended = rows(900, 200);
    insert(&db, &appended).await;
    live.extend(appended);
    check(&db, "docs", live.clone()).await;
    check(&db, "\"docs@before_delete\"", snapshot).await;

    // Fewer rows than asked for, NULL vectors included: every row comes back.
    let sql = query_sql("docs", &[1, 1, 1, 1], "WHERE category = 2 AND id < 60", 100);
    let (found, _) = search(&db, &sql).await;
    let expected = brute_force(&live, &[1, 1, 1, 1], 100, |r| r.category == 2 && r.id < 60);
    assert!(expected.iter().any(|r| r.1.is_none()));
    assert_same(&found, &expected, &sql);
}

#[tokio::test]
async fn an_exact_search_projects_every_column_of_the_rows_it_finds() {
    let db = TestDb::new().await;
    db.sql("CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, v VECTOR(2))")
        .await;
    db.sql("INSERT INTO docs VALUES (1, 'one', [1, 0]), (2, 'two', [2, 0]), (3, 'three', [3, 0])")
        .await;
    db.sql("INSERT INTO docs VALUES (4, 'four', [4, 0])").await;
    let sql = "SELECT title, v, id FROM docs ORDER BY v <-> [3.9, 0] LIMIT 2";
    assert_eq!(
        db.rows(sql).await,
        vec![
            vec!["four".to_string(), "[4, 0]".to_string(), "4".to_string()],
            vec!["three".to_string(), "[3, 0]".to_string(), "3".to_string()],
        ]
    );
    assert_eq!(
        counter(&analyzed(&db, sql).await, "loaded_vector_searches"),
        1
    );
}
