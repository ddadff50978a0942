//! Vector search on real embeddings (MiniLM, 384 dimensions, stored as `f16`): exact search
//! equals the published ground truth, and index search reaches its recall bound.

use std::sync::Arc;

use datafusion::arrow::array::{FixedSizeListArray, Float16Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use quiver_tests::npy::{minilm_dir, read_f16, read_i32, Matrix};
use quiver_tests::TestDb;

const ROWS: usize = 20_000;
const QUERIES: usize = 40;
const K: usize = 10;

fn literal(v: &[half::f16]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_f32().to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Loads the first `rows` base vectors into `emb (id BIGINT, embedding HALFVEC(384))` through a
/// Parquet file and `COPY ... FROM`.
async fn load(db: &TestDb, base: &Matrix<half::f16>, rows: usize) {
    let dim = base.cols;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(
                Arc::new(Field::new_list_field(DataType::Float16, true)),
                dim as i32,
            ),
            true,
        ),
    ]));
    let values = Float16Array::from(base.data[..rows * dim].to_vec());
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(
                FixedSizeListArray::try_new(
                    Arc::new(Field::new_list_field(DataType::Float16, true)),
                    dim as i32,
                    Arc::new(values),
                    None,
                )
                .unwrap(),
            ),
        ],
    )
    .unwrap();
    let path = db.dir.path().join("minilm.parquet");
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    db.sql(&format!(
        "CREATE TABLE emb (id BIGINT NOT NULL PRIMARY KEY, embedding HALFVEC({dim}));
         COPY emb FROM '{}'",
        path.display()
    ))
    .await;
}

async fn top_k(db: &TestDb, query: &[half::f16], k: usize) -> Vec<i64> {
    db.rows(&format!(
        "SELECT id FROM emb ORDER BY l2_distance(embedding, {}) LIMIT {k}",
        literal(query)
    ))
    .await
    .into_iter()
    .map(|r| r[0].parse().unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_search_matches_the_ground_truth_and_the_index_reaches_its_recall() {
    let dir = minilm_dir();
    let base = read_f16(&dir.join("base.f16.npy")).unwrap();
    let queries = read_f16(&dir.join("queries.f16.npy")).unwrap();
    let truth = read_i32(&dir.join("gt.l2.top100.npy")).unwrap();
    assert_eq!(
        (base.rows, base.cols, queries.cols, truth.cols),
        (50_000, 384, 384, 100)
    );

    // Exact search over all 50,000 rows returns the published top 10 (ties aside).
    let db = TestDb::new().await;
    load(&db, &base, base.rows).await;
    db.sql("SET quiver.use_index = false").await;
    let mut matched = 0;
    for q in 0..5 {
        let got = top_k(&db, queries.row(q), K).await;
        let want: Vec<i64> = truth.row(q)[..K].iter().map(|i| i64::from(*i)).collect();
        matched += got.iter().filter(|id| want.contains(id)).count();
    }
    assert!(
        matched >= 5 * K - 1,
        "exact search found {matched} of {} true neighbours",
        5 * K
    );
    drop(db);

    // Index search on a 20,000-row collection, against exact search on the same rows.
    let db = TestDb::new().await;
    load(&db, &base, ROWS).await;
    db.sql("CREATE INDEX emb_hnsw ON emb USING IVF_HNSW_SQ (embedding) WITH (num_partitions = 4, m = 16, ef_construction = 100)")
        .await;
    let mut exact = Vec::new();
    db.sql("SET quiver.use_index = false").await;
    for q in 0..QUERIES {
        exact.push(top_k(&db, queries.row(q), K).await);
    }
    db.sql("SET quiver.use_index = true; SET quiver.nprobes = 4; SET quiver.ef = 64")
        .await;
    let plan = db
        .rows(&format!(
            "EXPLAIN SELECT id FROM emb ORDER BY l2_distance(embedding, {}) LIMIT {K}",
            literal(queries.row(0))
        ))
        .await;
    assert!(
        plan.iter()
            .any(|r| r[1].contains("IndexKnnExec: index=emb_hnsw")),
        "{plan:?}"
    );
    let mut found = 0;
    for (q, truth) in exact.iter().enumerate() {
        let got = top_k(&db, queries.row(q), K).await;
        found += got.iter().filter(|id| truth.contains(id)).count();
    }
    let recall = found as f64 / (QUERIES * K) as f64;
    assert!(recall >= 0.9, "recall@{K} = {recall}");
}
