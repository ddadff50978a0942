//! The Flight SQL server end to end, through arrow-flight's own Flight SQL client: each test
//! starts a server on `127.0.0.1:0` over a fresh data root, waits until it listens, and shuts it
//! down through its shutdown signal.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod actions;
mod auth;
mod bad_input;
mod freshness;
mod ingest;
mod limits;
mod metadata;
mod prepared;
mod queries;
mod sessions;
mod statement_cache;

use std::sync::Arc;

use arrow::array::{Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::FlightInfo;
use futures::TryStreamExt;
use quiver_flight::{RunningServer, ServerConfig};
use tonic::transport::Channel;

/// A Flight SQL client.
pub type Client = FlightSqlServiceClient<Channel>;

/// A server over a temporary data root.
pub struct TestServer {
    /// The data root, deleted on drop.
    dir: tempfile::TempDir,
    server: RunningServer,
}

impl TestServer {
    /// A server with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `configure` adjusts.
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServerConfig::new(
            dir.path().to_string_lossy().to_string(),
            "127.0.0.1:0".parse().expect("address"),
        );
        configure(&mut config);
        let server = quiver_flight::start(config).await.expect("server starts");
        Self { dir, server }
    }

    /// The data root the server serves.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A new client connection (no credentials).
    pub async fn client(&self) -> Client {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.server.local_addr()))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
        FlightSqlServiceClient::new_from_inner(
            FlightServiceClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )
    }

    /// The server's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// The status inside a client error.
pub fn status(e: FlightError) -> tonic::Status {
    match e {
        FlightError::Tonic(status) => *status,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

/// Fetches every endpoint of `info`.
/// Asserts that `err` has `code` and a message containing `text`.
pub fn assert_refused(err: &tonic::Status, code: tonic::Code, text: &str) {
    assert_eq!(err.code(), code, "{}", err.message());
    assert!(err.message().contains(text), "{}", err.message());
}

pub async fn fetch(client: &mut Client, info: FlightInfo) -> Result<Vec<RecordBatch>, FlightError> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("ticket");
        let mut batches: Vec<RecordBatch> = client.do_get(ticket).await?.try_collect().await?;
        out.append(&mut batches);
    }
    Ok(out)
}

/// Runs a statement and returns its result; panics on error.
pub async fn query(client: &mut Client, sql: &str) -> Vec<RecordBatch> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    fetch(client, info)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs a statement that must fail and returns the status (from planning or from the stream).
pub async fn query_error(client: &mut Client, sql: &str) -> tonic::Status {
    match client.execute(sql.to_string(), None).await {
        Err(e) => status(e),
        Ok(info) => status(fetch(client, info).await.expect_err(sql)),
    }
}

/// A statement's rows, formatted.
pub async fn rows(client: &mut Client, sql: &str) -> Vec<Vec<String>> {
    quiver_tests::format_rows(&query(client, sql).await)
}

/// The `docs` collection of the tests: ids 1..=3 with 4-dimensional embeddings.
pub async fn create_docs(client: &mut Client) {
    client
        .execute_update(
            "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(4))"
                .into(),
            None,
        )
        .await
        .expect("create");
    let inserted = client
        .execute_update(
            "INSERT INTO docs VALUES (1, 'alpha', [1, 0, 0, 0]), (2, 'beta', [0, 1, 0, 0]), \
             (3, 'gamma', [0, 0, 1, 0])"
                .into(),
            None,
        )
        .await
        .expect("insert");
    assert_eq!(inserted, 3);
}

/// A vector column of `dim` dimensions, as a client would send it.
pub fn vectors(dim: i32, values: &[f32]) -> FixedSizeListArray {
    FixedSizeListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dim,
        Arc::new(Float32Array::from(values.to_vec())),
        None,
    )
    .expect("vectors")
}

/// Rows `(id, title, embedding)` for ingest.
pub fn docs_batch(ids: &[i64], embeddings: &[f32]) -> RecordBatch {
    let titles: Vec<String> = ids.iter().map(|i| format!("doc {i}")).collect();
    let embedding = vectors(4, embeddings);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("embedding", embedding.data_type().clone(), true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(titles)),
            Arc::new(embedding),
        ],
    )
    .expect("batch")
}

/// The server's `GetServerInfo` answer.
pub async fn server_info(client: &mut Client) -> serde_json::Value {
    let request = tonic::Request::new(arrow_flight::Action {
        r#type: "GetServerInfo".into(),
        body: Vec::new().into(),
    });
    let results: Vec<arrow_flight::Result> = client
        .inner_mut()
        .do_action(request)
        .await
        .expect("info")
        .into_inner()
        .try_collect()
        .await
        .expect("info");
    serde_json::from_slice(&results[0].body).expect("json")
}

/// The server's plan counts from `GetServerInfo`: (made, reused).
pub async fn plan_counts(client: &mut Client) -> (u64, u64) {
    let info = server_info(client).await;
    (
        info["plans_made"].as_u64().expect("plans_made"),
        info["plans_reused"].as_u64().expect("plans_reused"),
    )
}
