//! Authentication: basic auth in the handshake for a bearer token, a configured token, and
//! every call refused without one; tickets are not credentials.

use base64::Engine;
use quiver_flight::auth::AuthConfig;
use tonic::metadata::MetadataValue;

use super::*;

async fn secured() -> TestServer {
    TestServer::start_with(|config| {
        config.auth = Some(AuthConfig {
            user: Some(("alice".into(), "wonderland".into())),
            token: Some("static-token".into()),
        });
    })
    .await
}

#[tokio::test]
async fn calls_without_valid_credentials_are_refused() {
    let server = secured().await;
    let mut client = server.client().await;

    let err = status(
        client
            .execute("SELECT 1".into(), None)
            .await
            .expect_err("no token"),
    );
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = client
        .inner_mut()
        .list_actions(arrow_flight::Empty {})
        .await
        .expect_err("no token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let err = client
        .handshake("alice", "wrong")
        .await
        .expect_err("bad password");
    assert!(
        err.to_string().contains("invalid user name or password"),
        "{err}"
    );
    client.set_token("forged".into());
    let err = status(
        client
            .execute("SELECT 1".into(), None)
            .await
            .expect_err("forged"),
    );
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    server.shutdown().await;
}

#[tokio::test]
async fn a_handshake_token_opens_every_call_and_tickets_stay_with_their_owner() {
    let server = secured().await;
    let mut alice = server.client().await;
    alice
        .handshake("alice", "wonderland")
        .await
        .expect("handshake");
    assert_eq!(rows(&mut alice, "SELECT 1 AS one").await, vec![vec!["1"]]);

    // Basic credentials on a call work too, as does the configured token.
    let mut basic = server.client().await;
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    basic.set_header("authorization", format!("Basic {encoded}"));
    assert_eq!(rows(&mut basic, "SELECT 2").await, vec![vec!["2"]]);
    let mut service = server.client().await;
    service.set_token("static-token".into());
    assert_eq!(rows(&mut service, "SELECT 3").await, vec![vec!["3"]]);

    // A ticket is not a credential: without a token it is refused, and another user cannot
    // redeem it.
    let info = alice.execute("SELECT 4".into(), None).await.expect("plan");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut anonymous = server.client().await;
    let err = anonymous
        .inner_mut()
        .do_get(ticket.clone())
        .await
        .expect_err("no credentials");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = match service.do_get(ticket.clone()).await {
        Ok(_) => panic!("another user redeemed the ticket"),
        Err(e) => status(e),
    };
    assert_eq!(err.code(), tonic::Code::NotFound);
    let batches: Vec<RecordBatch> = alice
        .do_get(ticket)
        .await
        .expect("owner")
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(quiver_tests::format_rows(&batches), vec![vec!["4"]]);

    // The handshake answers with the token in the authorization header.
    let mut raw = server.client().await;
    let mut request = tonic::Request::new(futures::stream::iter(vec![
        arrow_flight::HandshakeRequest::default(),
    ]));
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Basic {encoded}")).expect("header"),
    );
    let response = raw.inner_mut().handshake(request).await.expect("handshake");
    let header = response.metadata().get("authorization").expect("header");
    assert!(header.to_str().expect("ascii").starts_with("Bearer "));
    server.shutdown().await;
}
