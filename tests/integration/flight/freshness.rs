//! Catalog freshness on a server: its own commits are seen by the next statement at once; other
//! processes' commits over the same data root within the catalog refresh interval, with no
//! object-store read per statement in between.

use std::time::Duration;

use super::*;

/// A second process on the server's data root.
async fn other_process(server: &TestServer) -> quiver_planner::QuiverSession {
    quiver_tests::open_session(
        &server.data_dir().to_string_lossy(),
        quiver_catalog::fault::FaultHooks::default(),
    )
    .await
}

#[tokio::test]
async fn within_the_interval_a_server_answers_from_what_it_knows() {
    let server = TestServer::start_with(|config| {
        config.catalog_refresh_interval = Duration::from_secs(3600);
    })
    .await;
    let mut client = server.client().await;
    // The server's own commit: seen by the next statement.
    query(&mut client, "CREATE TABLE mine (id BIGINT)").await;
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM mine").await,
        [["0"]]
    );
    // Another process's commit: not looked for until the interval has passed.
    other_process(&server)
        .await
        .run_script("CREATE TABLE theirs (id BIGINT)")
        .await
        .expect("create");
    let unseen = query_error(&mut client, "SELECT count(*) FROM theirs").await;
    assert!(unseen.message().contains("theirs"), "{unseen}");
    // A commit of the server's own reads the newest catalog first, and so brings it in.
    query(&mut client, "CREATE TABLE later (id BIGINT)").await;
    assert_eq!(
        rows(&mut client, "SELECT count(*) FROM theirs").await,
        [["0"]]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn after_the_interval_other_processes_commits_are_seen() {
    let interval = Duration::from_millis(300);
    let server = TestServer::start_with(|config| {
        config.catalog_refresh_interval = interval;
    })
    .await;
    let mut client = server.client().await;
    assert_eq!(rows(&mut client, "SELECT 1").await, [["1"]]);
    other_process(&server)
        .await
        .run_script("CREATE TABLE theirs (id BIGINT); INSERT INTO theirs VALUES (7)")
        .await
        .expect("create");
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert_eq!(rows(&mut client, "SELECT id FROM theirs").await, [["7"]]);
    server.shutdown().await;
}
