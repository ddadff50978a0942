//! Per-query limits (time and memory) and shutdown with queries still running.

use std::time::Duration;

use futures::StreamExt;

use super::*;

#[tokio::test]
async fn a_query_over_its_time_limit_is_stopped_inside_the_stream() {
    let server =
        TestServer::start_with(|config| config.limits.timeout = Some(Duration::from_millis(300)))
            .await;
    let mut client = server.client().await;
    let err = query_error(
        &mut client,
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    )
    .await;
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
    assert!(
        err.message().contains("query timeout (300ms)"),
        "{}",
        err.message()
    );
    assert_eq!(rows(&mut client, "SELECT 1").await, vec![vec!["1"]]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_query_over_its_memory_limit_fails_alone() {
    let server = TestServer::start_with(|config| config.limits.memory = Some(1 << 20)).await;
    let mut client = server.client().await;
    let err = query_error(
        &mut client,
        "SELECT array_agg(value) FROM generate_series(1, 5000000)",
    )
    .await;
    assert_eq!(
        err.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        err.message()
    );
    assert_eq!(rows(&mut client, "SELECT 1").await, vec![vec!["1"]]);
    // A command the session runs itself is bounded too, and leaves nothing behind.
    let err = status(
        client
            .execute_update(
                "CREATE TABLE big AS SELECT array_agg(value) AS v FROM generate_series(1, 5000000)"
                    .into(),
                None,
            )
            .await
            .expect_err("over the limit"),
    );
    assert_eq!(
        err.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        err.message()
    );
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM quiver.collections").await,
        vec![vec!["0"]]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_cancels_queries_that_outlive_the_grace_period() {
    let server =
        TestServer::start_with(|config| config.shutdown_grace = Duration::from_millis(200)).await;
    let mut client = server.client().await;
    let info = client
        .execute(
            "SELECT value FROM generate_series(1, 100000000000)".into(),
            None,
        )
        .await
        .expect("plan");
    let mut stream = client
        .do_get(info.endpoint[0].ticket.clone().expect("ticket"))
        .await
        .expect("stream");
    assert!(stream.next().await.expect("batch").is_ok());

    let stopping = tokio::spawn(server.shutdown());
    let mut ended = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            ended = Some(e);
            break;
        }
    }
    let ended = status(ended.expect("the stream ends with an error"));
    assert_eq!(ended.code(), tonic::Code::Cancelled, "{ended:?}");
    stopping.await.expect("shutdown task");
}
