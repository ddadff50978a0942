//! Bad input: malformed and truncated messages, unknown commands, SQL errors, oversized
//! requests and clients that go away mid-stream get a clear status; the server keeps serving and
//! nothing is half-written.

use std::time::Duration;

use arrow::array::StringArray;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{
    Any, CommandStatementIngest, ProstMessageExt, TableDefinitionOptions, TableExistsOption,
    TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{FlightData, FlightDescriptor, Ticket};
use futures::StreamExt;
use prost::Message;

use super::*;

fn ingest_descriptor(table: &str) -> FlightDescriptor {
    let command = CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create as i32,
            if_exists: TableExistsOption::Fail as i32,
        }),
        table: table.into(),
        ..Default::default()
    };
    FlightDescriptor::new_cmd(command.as_any().encode_to_vec())
}

async fn ingest_messages(table: &str, batches: Vec<RecordBatch>) -> Vec<FlightData> {
    FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(ingest_descriptor(table)))
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .try_collect()
        .await
        .expect("encode")
}

/// Waits (up to ten seconds) until `check` holds.
async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached in time");
}

async fn collection_exists(client: &mut Client, name: &str) -> bool {
    let found = rows(
        client,
        &format!("SELECT count(*) FROM quiver.collections WHERE name = '{name}'"),
    )
    .await;
    found[0][0] != "0"
}

#[tokio::test]
async fn malformed_messages_get_clear_statuses() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let garbage = FlightDescriptor::new_cmd(vec![0xff, 0x01, 0x02, 0x03]);
    let err = client
        .inner_mut()
        .get_flight_info(garbage)
        .await
        .expect_err("garbage");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let unknown = Any {
        type_url: "type.googleapis.com/not.a.Command".into(),
        value: vec![1, 2, 3].into(),
    };
    let err = client
        .inner_mut()
        .get_flight_info(FlightDescriptor::new_cmd(unknown.encode_to_vec()))
        .await
        .expect_err("unknown command");
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // A known command whose body does not decode (its query is not UTF-8): arrow-flight calls
    // that INTERNAL; it is the client's malformed input.
    let undecodable = Any {
        type_url: "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery".into(),
        value: vec![0x0a, 0x03, 0xff, 0xfe, 0xfd].into(),
    };
    let err = client
        .inner_mut()
        .get_flight_info(FlightDescriptor::new_cmd(undecodable.encode_to_vec()))
        .await
        .expect_err("undecodable command");
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    assert!(
        err.message().starts_with("malformed Flight SQL command: "),
        "{}",
        err.message()
    );
    let err = client
        .inner_mut()
        .do_get(Ticket::new(undecodable.encode_to_vec()))
        .await
        .expect_err("undecodable ticket");
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );

    let err = client
        .inner_mut()
        .do_get(Ticket::new(vec![0xde, 0xad]))
        .await
        .expect_err("garbage ticket");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let forged = TicketStatementQuery {
        statement_handle: "0123456789abcdef".into(),
    };
    let err = client
        .inner_mut()
        .do_get(Ticket::new(forged.as_any().encode_to_vec()))
        .await
        .expect_err("unknown handle");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let err = client
        .inner_mut()
        .do_put(futures::stream::empty::<FlightData>())
        .await
        .expect_err("empty put");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let no_descriptor = FlightData::default();
    let err = client
        .inner_mut()
        .do_put(futures::stream::iter(vec![no_descriptor]))
        .await
        .expect_err("no descriptor");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A truncated record batch: the schema arrives, the batch's body is cut short.
    let mut messages = ingest_messages("cut", vec![docs_batch(&[1, 2], &[0.5; 8])]).await;
    let last = messages.last_mut().expect("batch message");
    last.data_body = last.data_body.slice(0..last.data_body.len() / 2);
    let err = client
        .inner_mut()
        .do_put(futures::stream::iter(messages))
        .await
        .expect_err("truncated");
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    assert!(!collection_exists(&mut client, "cut").await);

    // A garbage IPC header where the schema should be.
    let mut messages = ingest_messages("junk", vec![docs_batch(&[1], &[0.5; 4])]).await;
    messages[0].data_header = vec![0x10, 0x00, 0x00, 0x00, 0xff, 0xff].into();
    let err = client
        .inner_mut()
        .do_put(futures::stream::iter(messages))
        .await
        .expect_err("junk header");
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );

    // SQL errors carry the engine's message.
    let err = query_error(&mut client, "SELEC 1").await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("SELEC"), "{}", err.message());
    let err = query_error(&mut client, "SELECT * FROM missing").await;
    assert!(err.message().contains("missing"), "{}", err.message());
    let err = query_error(&mut client, "SELECT 1; SELECT 2").await;
    assert!(
        err.message().contains("expected one statement"),
        "{}",
        err.message()
    );
    client
        .execute_update("CREATE TABLE t (id BIGINT)".into(), None)
        .await
        .expect("create");
    let err = status(
        client
            .execute_update("CREATE TABLE t (id BIGINT)".into(), None)
            .await
            .expect_err("twice"),
    );
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert_eq!(err.message(), "collection 'default.t' already exists");
    let err = status(
        client
            .execute_update("DROP TABLE nope".into(), None)
            .await
            .expect_err("missing"),
    );
    assert_eq!(err.code(), tonic::Code::NotFound);

    // After all that, the server still serves.
    assert_eq!(rows(&mut client, "SELECT 40 + 2").await, vec![vec!["42"]]);
    server.shutdown().await;
}

#[tokio::test]
async fn copy_cannot_reach_the_servers_files_unless_allowed() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "id\n1\n").expect("write");
    let copy_from = format!(
        "COPY t FROM '{}' WITH (FORMAT csv, HEADER true)",
        secret.display()
    );
    let copy_to = format!(
        "COPY (SELECT 1 AS id) TO '{}'",
        dir.path().join("out.csv").display()
    );

    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .execute_update("CREATE TABLE t (id BIGINT)".into(), None)
        .await
        .expect("create");
    for sql in [&copy_from, &copy_to] {
        let err = status(
            client
                .execute_update(sql.clone(), None)
                .await
                .expect_err("refused"),
        );
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{sql}");
        assert!(
            err.message().contains("--allow-server-files"),
            "{}",
            err.message()
        );
    }
    assert!(!dir.path().join("out.csv").exists());
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM t").await,
        vec![vec!["0"]]
    );
    server.shutdown().await;

    let server = TestServer::start_with(|config| config.limits.allow_server_files = true).await;
    let mut client = server.client().await;
    client
        .execute_update("CREATE TABLE t (id BIGINT)".into(), None)
        .await
        .expect("create");
    client
        .execute_update(copy_from, None)
        .await
        .expect("allowed");
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM t").await,
        vec![vec!["1"]]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let server = TestServer::start_with(|config| config.max_message_size = 1 << 20).await;
    let mut client = server.client().await;

    let huge_sql = format!("SELECT '{}'", "x".repeat(2 << 20));
    let err = status(client.execute(huge_sql, None).await.expect_err("too large"));
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err:?}"
    );

    let big = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["y".repeat(1_500_000)]))],
    )
    .expect("batch");
    let messages = ingest_messages("big", vec![big]).await;
    let err = client
        .inner_mut()
        .do_put(futures::stream::iter(messages))
        .await
        .map(|_| ())
        .expect_err("too large");
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
        ),
        "{err:?}"
    );
    assert!(!collection_exists(&mut client, "big").await);
    assert_eq!(rows(&mut client, "SELECT 1").await, vec![vec!["1"]]);
    server.shutdown().await;
}

#[tokio::test]
async fn clients_disconnecting_mid_stream_leave_the_server_serving() {
    let server = TestServer::start().await;

    // A reader that goes away after one batch of a huge result.
    let mut reader = server.client().await;
    let info = reader
        .execute(
            "SELECT value FROM generate_series(1, 1000000000)".into(),
            None,
        )
        .await
        .expect("plan");
    let mut stream = reader
        .do_get(info.endpoint[0].ticket.clone().expect("ticket"))
        .await
        .expect("stream");
    assert!(stream.next().await.expect("batch").is_ok());
    drop(stream);
    drop(reader);

    // A writer whose process dies mid-ingest (its runtime, and so its connection, vanishes
    // without ending the stream): the collection the ingest started is rolled back.
    let messages = ingest_messages("half", vec![docs_batch(&[1], &[0.5; 4])]).await;
    let url = format!("http://{}", server.addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sender = runtime.block_on(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            let mut client = FlightServiceClient::new(channel);
            let (sender, receiver) = futures::channel::mpsc::unbounded::<FlightData>();
            for message in messages {
                sender.unbounded_send(message).expect("queue");
            }
            tokio::spawn(async move { client.do_put(receiver).await.map(|_| ()) });
            let _ = stopped.await;
            sender
        });
        // Dropping the runtime drops the connection without another frame; the request's
        // body never ends.
        drop(runtime);
        drop(sender);
    });
    let mut client = server.client().await;
    eventually(async || collection_exists(&mut client, "half").await).await;
    stop.send(()).expect("writer waiting");
    writer.join().expect("writer thread");
    eventually(async || !collection_exists(&mut client, "half").await).await;

    assert_eq!(rows(&mut client, "SELECT 1").await, vec![vec!["1"]]);
    server.shutdown().await;
}

/// `n` copies of `part` joined by `separator`.
fn repeated(part: &str, separator: &str, n: usize) -> String {
    vec![part; n].join(separator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_statements_are_answered_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Each of these (about 100 bytes) overflowed a worker thread's stack while it was planned,
    // and the server aborted: every client lost its connection.
    let nested_subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(10), ")".repeat(10));
    let statements = [
        (format!("SELECT {}true", "NOT ".repeat(23)), "false"),
        (
            format!("SELECT {}-1{}", "abs(".repeat(17), ")".repeat(17)),
            "1",
        ),
        (nested_subqueries, "1"),
        (
            format!(
                "SELECT count(*) FROM (SELECT 1 AS a) WHERE {}",
                repeated("a = 1", " OR ", 80)
            ),
            "1",
        ),
        (format!("SELECT {}", repeated("1", "+", 84)), "84"),
    ];
    for (sql, expected) in &statements {
        let mut fresh = server.client().await;
        assert_eq!(rows(&mut fresh, sql).await, vec![vec![*expected]], "{sql}");
    }
    assert_eq!(rows(&mut client, "SELECT 1").await, vec![vec!["1"]]);
    server.shutdown().await;
}

#[tokio::test]
async fn statements_over_the_size_limits_are_refused_by_name() {
    use quiver_planner::statements::limits::{MAX_IN_LIST, MAX_NESTING, MAX_SCRIPT_BYTES};

    let server = TestServer::start().await;
    let mut client = server.client().await;
    let values = |n: usize| {
        (1..=n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let at_limit = format!(
        "SELECT count(*) FROM (SELECT 1 AS a) WHERE a IN ({})",
        values(MAX_IN_LIST)
    );
    assert_eq!(rows(&mut client, &at_limit).await, vec![vec!["1"]]);
    let over = format!("SELECT 1 WHERE 1 IN ({})", values(MAX_IN_LIST + 1));
    let status = query_error(&mut client, &over).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains(&format!("an IN list has {} values", MAX_IN_LIST + 1)),
        "{}",
        status.message()
    );
    let long = format!("SELECT 1 -- {}", "x".repeat(MAX_SCRIPT_BYTES));
    let status = query_error(&mut client, &long).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains(&format!(
            "{} bytes, more than the {MAX_SCRIPT_BYTES}",
            long.len()
        )),
        "{}",
        status.message()
    );
    // Nested `NOT (` took the parser time exponential in its depth (40 levels: over a minute,
    // on the threads answering every client when it came as a prepared statement).
    let nested =
        |depth: usize| format!("SELECT {}true{}", "NOT (".repeat(depth), ")".repeat(depth));
    let parenthesized = format!(
        "SELECT {}1{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(rows(&mut client, &parenthesized).await, vec![vec!["1"]]);
    let too_deep = query_error(&mut client, &nested(80)).await;
    assert_eq!(too_deep.code(), tonic::Code::InvalidArgument);
    assert!(
        too_deep
            .message()
            .contains(&format!("more than {MAX_NESTING} deep")),
        "{}",
        too_deep.message()
    );
    let refused = super::status(
        client
            .prepare(nested(80), None)
            .await
            .expect_err("too deep to prepare"),
    );
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(rows(&mut client, "SELECT 1").await, vec![vec!["1"]]);
    server.shutdown().await;
}
