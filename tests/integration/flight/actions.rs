//! Custom actions (JSON) and cancellation through Flight actions.

use arrow_flight::{Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus};
use futures::StreamExt;
use prost::Message;

use super::*;

async fn action(
    client: &mut Client,
    name: &str,
    body: &[u8],
) -> Result<Vec<Vec<u8>>, tonic::Status> {
    let results = client
        .do_action(Action::new(name.to_string(), body.to_vec()))
        .await
        .map_err(status)?;
    let results: Vec<arrow_flight::Result> = results.try_collect().await?;
    Ok(results.into_iter().map(|r| r.body.to_vec()).collect())
}

#[tokio::test]
async fn custom_actions_take_and_return_json() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let listed: Vec<String> = client
        .inner_mut()
        .list_actions(arrow_flight::Empty {})
        .await
        .expect("list")
        .into_inner()
        .map(|a| a.expect("action").r#type)
        .collect()
        .await;
    for expected in [
        "CreatePreparedStatement",
        "CancelFlightInfo",
        "GetServerInfo",
    ] {
        assert!(listed.iter().any(|a| a == expected), "{listed:?}");
    }

    let results = action(&mut client, "GetServerInfo", b"")
        .await
        .expect("info");
    assert_eq!(results.len(), 1);
    let info: serde_json::Value = serde_json::from_slice(&results[0]).expect("json");
    assert_eq!(info["name"], "Quiver");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    let err = action(&mut client, "GetServerInfo", b"{\"unexpected\": true")
        .await
        .expect_err("invalid json");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .contains("invalid JSON body for action 'GetServerInfo'"),
        "{}",
        err.message()
    );

    let err = action(&mut client, "DropEverything", b"{}")
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(
        err.message().contains("unknown action 'DropEverything'"),
        "{}",
        err.message()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cancel_flight_info_cancels_a_planned_statement() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let info = client
        .execute("SELECT value FROM generate_series(1, 10)".into(), None)
        .await
        .expect("plan");
    let request = CancelFlightInfoRequest::new(info.clone());
    let results = action(&mut client, "CancelFlightInfo", &request.encode_to_vec())
        .await
        .expect("cancel");
    let result = CancelFlightInfoResult::decode(results[0].as_slice()).expect("result");
    assert_eq!(result.status(), CancelStatus::Cancelled);
    let err = status(
        fetch(&mut client, info.clone())
            .await
            .expect_err("cancelled"),
    );
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Cancelling again: nothing left to cancel.
    let results = action(&mut client, "CancelFlightInfo", &request.encode_to_vec())
        .await
        .expect("cancel");
    let result = CancelFlightInfoResult::decode(results[0].as_slice()).expect("result");
    assert_eq!(result.status(), CancelStatus::NotCancellable);

    let err = action(&mut client, "CancelFlightInfo", b"\xff\xff\xff")
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_running_query_ends_its_stream() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let info = client
        .execute(
            "SELECT value FROM generate_series(1, 100000000)".into(),
            None,
        )
        .await
        .expect("plan");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut stream = client.do_get(ticket).await.expect("stream");
    let first = stream.next().await.expect("a batch").expect("ok");
    assert!(first.num_rows() > 0);

    let mut other = server.client().await;
    let results = action(
        &mut other,
        "CancelFlightInfo",
        &CancelFlightInfoRequest::new(info).encode_to_vec(),
    )
    .await
    .expect("cancel");
    let result = CancelFlightInfoResult::decode(results[0].as_slice()).expect("result");
    assert_eq!(result.status(), CancelStatus::Cancelling);
    let mut end = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            end = Some(status(e));
            break;
        }
    }
    let end = end.expect("the stream ends with an error");
    assert_eq!(end.code(), tonic::Code::Cancelled);
    server.shutdown().await;
}
