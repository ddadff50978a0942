//! Flight SQL round trips against the same work in process, on a collection of 100,000 rows of
//! `VECTOR(128)` served on loopback: a point query (`WHERE id = ...`), a k=10 search
//! (`ORDER BY l2_distance(...) LIMIT 10`), and `DoGet` throughput of a full scan (bytes of Arrow
//! data received per second).

// Criterion's macros generate undocumented items; a bench fails loudly.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quiver_benchmarks::random_vectors;
use quiver_flight::cli::client::{ConnectOptions, RemoteClient};
use quiver_flight::cli::sql::open_session;
use quiver_flight::ServerConfig;
use tokio::runtime::Runtime;

const ROWS: usize = 100_000;
const DIM: usize = 128;
const BATCH: usize = 10_000;

fn batches() -> Vec<RecordBatch> {
    let item = Arc::new(Field::new_list_field(DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(item.clone(), DIM as i32),
            true,
        ),
    ]));
    let vectors = random_vectors(ROWS, DIM, 7);
    (0..ROWS)
        .step_by(BATCH)
        .map(|start| {
            let ids = Int64Array::from_iter_values((start as i64)..((start + BATCH) as i64));
            let values = Float32Array::from(vectors[start * DIM..(start + BATCH) * DIM].to_vec());
            let embedding =
                FixedSizeListArray::try_new(item.clone(), DIM as i32, Arc::new(values), None)
                    .unwrap();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(embedding)]).unwrap()
        })
        .collect()
}

async fn load(url: &str) {
    let channel = tonic::transport::Endpoint::from_shared(url.replace("grpc://", "http://"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new_from_inner(
        FlightServiceClient::new(channel).max_encoding_message_size(usize::MAX),
    );
    let command = CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create as i32,
            if_exists: TableExistsOption::Fail as i32,
        }),
        table: "bench".into(),
        ..Default::default()
    };
    let stream = futures::stream::iter(batches().into_iter().map(Ok));
    let rows = client.execute_ingest(command, stream).await.unwrap();
    assert_eq!(rows, ROWS as i64);
}

fn flight(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().to_string();
    let config = ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap());
    let server = rt.block_on(quiver_flight::start(config)).unwrap();
    rt.block_on(load(&server.url()));
    let session = rt.block_on(open_session(&data)).unwrap();
    let mut client = rt
        .block_on(RemoteClient::connect(&ConnectOptions {
            url: server.url(),
            ..Default::default()
        }))
        .unwrap();

    let query: Vec<String> = random_vectors(1, DIM, 9)
        .iter()
        .map(|v| v.to_string())
        .collect();
    let point = "SELECT id, embedding FROM bench WHERE id = 4242".to_string();
    let knn = format!(
        "SELECT id, l2_distance(embedding, [{}]) AS d FROM bench ORDER BY d LIMIT 10",
        query.join(", ")
    );
    for (name, sql) in [("point_query", &point), ("knn_k10", &knn)] {
        let mut group = c.benchmark_group(format!("flight/{name}"));
        group.sample_size(20);
        group.bench_function("in_process", |b| {
            b.iter(|| {
                rt.block_on(async { session.sql(sql).await.unwrap().collect().await.unwrap() })
            })
        });
        group.bench_function("flight", |b| {
            b.iter(|| rt.block_on(client.run(sql)).unwrap())
        });
        group.finish();
    }

    let scan = "SELECT id, embedding FROM bench";
    let (_, all) = rt.block_on(client.run(scan)).unwrap();
    let bytes: usize = all.iter().map(|b| b.get_array_memory_size()).sum();
    let mut group = c.benchmark_group("flight/scan");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("do_get", |b| {
        b.iter(|| rt.block_on(client.run(scan)).unwrap())
    });
    group.bench_function("in_process", |b| {
        b.iter(|| rt.block_on(async { session.sql(scan).await.unwrap().collect().await.unwrap() }))
    });
    group.finish();
    rt.block_on(server.shutdown()).unwrap();
}

criterion_group!(benches, flight);
criterion_main!(benches);
