//! Statements over Flight: commands, writes and queries, streamed results, tickets, and the
//! CLI's output matching the embedded engine's.

use arrow::datatypes::DataType;
use quiver_flight::cli::client::{ConnectOptions, RemoteClient};
use quiver_flight::cli::sql::{format_result, PrintOptions};

use super::*;

#[tokio::test]
async fn statements_plan_write_and_query_over_flight() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;

    assert_eq!(
        rows(&mut client, "SELECT id, title FROM docs ORDER BY id").await,
        vec![vec!["1", "alpha"], vec!["2", "beta"], vec!["3", "gamma"]]
    );
    let nearest = rows(
        &mut client,
        "SELECT id, l2_distance(embedding, [0, 0.9, 0.1, 0]) AS d FROM docs ORDER BY d LIMIT 2",
    )
    .await;
    assert_eq!(nearest[0][0], "2");
    assert_eq!(nearest[1][0], "3");

    // The FlightInfo announces the schema the stream then carries.
    let info = client
        .execute("SELECT id, embedding FROM docs".into(), None)
        .await
        .expect("plan");
    let announced = info.clone().try_decode_schema().expect("schema");
    assert_eq!(announced.field(0).data_type(), &DataType::Int64);
    assert!(matches!(
        announced.field(1).data_type(),
        DataType::FixedSizeList(_, 4)
    ));
    let batches = fetch(&mut client, info).await.expect("fetch");
    assert_eq!(batches[0].schema().fields(), announced.fields());

    // UPDATE and DELETE report their counts through DoPut.
    let updated = client
        .execute_update("UPDATE docs SET title = 'B' WHERE id = 2".into(), None)
        .await
        .expect("update");
    assert_eq!(updated, 1);
    let deleted = client
        .execute_update("DELETE FROM docs WHERE id > 1".into(), None)
        .await
        .expect("delete");
    assert_eq!(deleted, 2);
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM docs").await,
        vec![vec!["1"]]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn writes_run_once_whether_or_not_the_result_is_fetched() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_docs(&mut client).await;

    // GetFlightInfo runs the INSERT; the ticket only returns its count.
    let info = client
        .execute(
            "INSERT INTO docs VALUES (4, 'delta', [1, 1, 0, 0])".into(),
            None,
        )
        .await
        .expect("insert");
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM docs").await,
        vec![vec!["4"]]
    );
    let count = fetch(&mut client, info.clone()).await.expect("count");
    assert_eq!(quiver_tests::format_rows(&count), vec![vec!["1"]]);

    // A ticket is redeemed once: replaying it neither re-runs nor re-reads anything.
    let replay = status(fetch(&mut client, info).await.expect_err("replayed ticket"));
    assert_eq!(replay.code(), tonic::Code::NotFound);
    assert!(
        replay.message().contains("already fetched"),
        "{}",
        replay.message()
    );
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM docs").await,
        vec![vec!["4"]]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn large_results_stream_in_many_batches() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let batches = query(&mut client, "SELECT value FROM generate_series(1, 300000)").await;
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, 300_000);
    assert!(batches.len() > 10, "streamed in {} batches", batches.len());
    server.shutdown().await;
}

#[tokio::test]
async fn remote_cli_output_matches_the_embedded_engine() {
    let server = TestServer::start().await;
    let mut remote = RemoteClient::connect(&ConnectOptions {
        url: format!("grpc://{}", server.addr()),
        ..Default::default()
    })
    .await
    .expect("connect");
    let script = [
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v VECTOR(2))",
        "INSERT INTO t VALUES (1, [1, 2]), (2, [3, 4])",
        "SELECT id, v, l2_distance(v, [1, 2]) AS d FROM t ORDER BY d",
        "DESCRIBE t",
        "SELECT id FROM t WHERE id > 10",
    ];
    let mut remote_output = Vec::new();
    for sql in script {
        let (schema, batches) = remote.run(sql).await.expect(sql);
        remote_output
            .push(format_result(&schema, &batches, PrintOptions::default()).expect("format"));
    }
    server.shutdown().await;

    // The same statements in a fresh embedded session over another root.
    let db = quiver_tests::TestDb::new().await;
    for (sql, remote) in script.iter().zip(&remote_output) {
        let df = db.session.sql(sql).await.expect(sql);
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await.expect(sql);
        assert_eq!(
            &format_result(&schema, &batches, PrintOptions::default()).expect("format"),
            remote,
            "{sql}"
        );
    }
    assert_eq!(remote_output[0], "OK");
    assert!(
        remote_output[4].ends_with("(0 rows)"),
        "{}",
        remote_output[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_are_served_side_by_side() {
    let server = TestServer::start().await;
    let mut setup = server.client().await;
    create_docs(&mut setup).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let sql = format!(
                "SELECT id FROM docs ORDER BY l2_distance(embedding, [0, 0, 1, {i}]) LIMIT 1"
            );
            rows(&mut client, &sql).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), vec![vec!["3"]]);
    }
    server.shutdown().await;
}
