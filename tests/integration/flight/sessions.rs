//! Sessions over Flight SQL: a client that sends back its `arrow_flight_session_id` cookie keeps
//! its settings (set with `SET` or as session options) across statements; clients without one
//! behave as before; sessions are isolated, closed on request and expire when idle.

use std::time::Duration;

use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{Action, FlightDescriptor};
use prost::Message;
use quiver_flight::cli::client::{ConnectOptions, RemoteClient};
use quiver_flight::config::SessionLimits;
use quiver_flight::service::sessions::cookie::opened_session;
use quiver_flight::service::sessions::options::{
    session_option_value::OptionValue, CloseSessionRequest, CloseSessionResult, CloseSessionStatus,
    GetSessionOptionsRequest, GetSessionOptionsResult, SessionOptionValue,
    SetSessionOptionsRequest, SetSessionOptionsResult, CLOSE_SESSION, GET_SESSION_OPTIONS,
    SET_SESSION_OPTIONS,
};
use tonic::metadata::{MetadataMap, MetadataValue};

use super::*;

/// The value of `SHOW <name>` on `client`.
async fn show(client: &mut Client, name: &str) -> String {
    rows(client, &format!("SHOW {name}")).await[0][1].clone()
}

/// The value of `SHOW <name>` on a session nobody changed.
async fn default_of(server: &TestServer, name: &str) -> String {
    show(&mut server.client().await, name).await
}

/// The session id a response's `Set-Cookie` opens.
fn cookie_of(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(opened_session)
        .map(str::to_string)
}

/// A request carrying `session`'s cookie.
fn with_cookie<T>(body: T, session: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if let Some(id) = session {
        let value = MetadataValue::try_from(format!("arrow_flight_session_id={id}")).unwrap();
        request.metadata_mut().insert("cookie", value);
    }
    request
}

/// Runs a session action; returns the cookie the response opened (if any) and the result body.
async fn action(
    client: &mut Client,
    kind: &str,
    body: Vec<u8>,
    session: Option<&str>,
) -> Result<(Option<String>, Vec<u8>), tonic::Status> {
    let request = with_cookie(
        Action {
            r#type: kind.to_string(),
            body: body.into(),
        },
        session,
    );
    let response = client.inner_mut().do_action(request).await?;
    let opened = cookie_of(response.metadata());
    let results: Vec<arrow_flight::Result> = response.into_inner().try_collect().await?;
    Ok((opened, results[0].body.to_vec()))
}

/// A client that sends `session`'s cookie with every Flight SQL call.
async fn client_in(server: &TestServer, session: &str) -> Client {
    let mut client = server.client().await;
    client.set_header("cookie", format!("arrow_flight_session_id={session}"));
    client
}

fn int(value: i64) -> SessionOptionValue {
    SessionOptionValue {
        option_value: Some(OptionValue::Int64Value(value)),
    }
}

fn string(value: &str) -> SessionOptionValue {
    SessionOptionValue {
        option_value: Some(OptionValue::StringValue(value.to_string())),
    }
}

#[tokio::test]
async fn a_set_opens_a_session_that_keeps_the_setting() {
    let server = TestServer::start().await;
    let default_ef = default_of(&server, "quiver.ef").await;
    assert_ne!(default_ef, "64");

    // SET through GetFlightInfo, as ADBC sends it: the response opens a session.
    let mut raw = server.client().await;
    let command = CommandStatementQuery {
        query: "SET quiver.ef = 64".into(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let response = raw
        .inner_mut()
        .get_flight_info(tonic::Request::new(descriptor))
        .await
        .expect("SET");
    let session = cookie_of(response.metadata()).expect("a SET opens a session");

    let mut kept = client_in(&server, &session).await;
    assert_eq!(show(&mut kept, "quiver.ef").await, "64");
    // A second SET on the same session changes it, and opens no other session.
    let mut raw_kept = client_in(&server, &session).await;
    query(&mut raw_kept, "SET quiver.ef = 80").await;
    assert_eq!(show(&mut kept, "quiver.ef").await, "80");

    // Clients without the cookie see nothing of it, and their own SET is dropped as before.
    let mut other = server.client().await;
    assert_eq!(show(&mut other, "quiver.ef").await, default_ef);
    query(&mut other, "SET quiver.ef = 12").await;
    assert_eq!(show(&mut other, "quiver.ef").await, default_ef);
    assert_eq!(show(&mut kept, "quiver.ef").await, "80");
    server.shutdown().await;
}

#[tokio::test]
async fn two_sessions_keep_their_own_settings_and_databases() {
    let server = TestServer::start().await;
    let mut setup = server.client().await;
    query(&mut setup, "CREATE DATABASE shop").await;
    query(
        &mut setup,
        "CREATE TABLE shop.items (id BIGINT, name VARCHAR)",
    )
    .await;
    query(
        &mut setup,
        "INSERT INTO shop.items VALUES (1, 'a'), (2, 'b')",
    )
    .await;

    let options = |ef: i64, schema: Option<&str>| {
        let mut request = SetSessionOptionsRequest::default();
        request.session_options.insert("quiver.ef".into(), int(ef));
        if let Some(schema) = schema {
            request
                .session_options
                .insert("schema".into(), string(schema));
        }
        request.encode_to_vec()
    };
    let (first, body) = action(
        &mut setup,
        SET_SESSION_OPTIONS,
        options(32, Some("shop")),
        None,
    )
    .await
    .expect("set");
    let first = first.expect("SetSessionOptions opens a session");
    assert!(SetSessionOptionsResult::decode(body.as_slice())
        .unwrap()
        .errors
        .is_empty());
    let (second, _) = action(&mut setup, SET_SESSION_OPTIONS, options(48, None), None)
        .await
        .expect("set");
    let second = second.expect("a second session");
    assert_ne!(first, second);

    let mut a = client_in(&server, &first).await;
    let mut b = client_in(&server, &second).await;
    assert_eq!(show(&mut a, "quiver.ef").await, "32");
    assert_eq!(show(&mut b, "quiver.ef").await, "48");
    // The first session's current database resolves bare names, in queries and in prepared
    // statements alike; the second's is still the default.
    assert_eq!(rows(&mut a, "SELECT count(*) FROM items").await, [["2"]]);
    let mut prepared = a
        .prepare("SELECT name FROM items WHERE id = 2".into(), None)
        .await
        .expect("prepare in the session");
    let info = prepared.execute().await.expect("execute");
    let batches = fetch(&mut a, info).await.expect("fetch");
    assert_eq!(quiver_tests::format_rows(&batches), [["b"]]);
    let elsewhere = query_error(&mut b, "SELECT count(*) FROM items").await;
    assert!(elsewhere.message().contains("default.items"), "{elsewhere}");

    // GetSessionOptions reads them back, typed; without a session it reads the defaults.
    let (_, body) = action(
        &mut setup,
        GET_SESSION_OPTIONS,
        GetSessionOptionsRequest {}.encode_to_vec(),
        Some(&first),
    )
    .await
    .expect("get");
    let got = GetSessionOptionsResult::decode(body.as_slice()).unwrap();
    assert_eq!(got.session_options["quiver.ef"], int(32));
    assert_eq!(got.session_options["schema"], string("shop"));
    assert_eq!(got.session_options["catalog"], string("quiver"));
    let (opened, body) = action(
        &mut setup,
        GET_SESSION_OPTIONS,
        GetSessionOptionsRequest {}.encode_to_vec(),
        None,
    )
    .await
    .expect("get without a session");
    assert_eq!(opened, None, "reading options opens no session");
    let defaults = GetSessionOptionsResult::decode(body.as_slice()).unwrap();
    assert_eq!(
        defaults.session_options["quiver.ef"],
        int(default_of(&server, "quiver.ef").await.parse().unwrap())
    );

    // A bad option is named in the result; the others are set.
    let mut bad = SetSessionOptionsRequest::default();
    bad.session_options.insert("quiver.nope".into(), int(1));
    bad.session_options
        .insert("schema".into(), string("nowhere"));
    bad.session_options.insert("quiver.nprobes".into(), int(7));
    let (_, body) = action(
        &mut setup,
        SET_SESSION_OPTIONS,
        bad.encode_to_vec(),
        Some(&first),
    )
    .await
    .expect("set");
    let mut refused: Vec<_> = SetSessionOptionsResult::decode(body.as_slice())
        .unwrap()
        .errors
        .into_keys()
        .collect();
    refused.sort();
    assert_eq!(refused, ["quiver.nope", "schema"]);
    assert_eq!(show(&mut a, "quiver.nprobes").await, "7");
    server.shutdown().await;
}

#[tokio::test]
async fn a_closed_session_is_not_found() {
    let server = TestServer::start().await;
    let mut raw = server.client().await;
    let (session, _) = action(
        &mut raw,
        SET_SESSION_OPTIONS,
        SetSessionOptionsRequest::default().encode_to_vec(),
        None,
    )
    .await
    .expect("open");
    let session = session.expect("opened");
    let mut kept = client_in(&server, &session).await;
    assert_eq!(rows(&mut kept, "SELECT 1").await, [["1"]]);

    let (_, body) = action(
        &mut raw,
        CLOSE_SESSION,
        CloseSessionRequest {}.encode_to_vec(),
        Some(&session),
    )
    .await
    .expect("close");
    assert_eq!(
        CloseSessionResult::decode(body.as_slice()).unwrap().status,
        CloseSessionStatus::Closed as i32
    );
    let gone = query_error(&mut kept, "SELECT 1").await;
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone}");
    let again = action(
        &mut raw,
        CLOSE_SESSION,
        CloseSessionRequest {}.encode_to_vec(),
        Some(&session),
    )
    .await
    .expect_err("closed twice");
    assert_eq!(again.code(), tonic::Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_session_expires() {
    let server = TestServer::start_with(|config| {
        config.sessions = SessionLimits {
            idle_timeout: Duration::from_millis(300),
            ..SessionLimits::default()
        };
    })
    .await;
    let mut raw = server.client().await;
    let mut request = SetSessionOptionsRequest::default();
    request.session_options.insert("quiver.ef".into(), int(64));
    let (session, _) = action(&mut raw, SET_SESSION_OPTIONS, request.encode_to_vec(), None)
        .await
        .expect("open");
    let mut kept = client_in(&server, &session.expect("opened")).await;
    assert_eq!(show(&mut kept, "quiver.ef").await, "64");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expired = query_error(&mut kept, "SELECT 1").await;
    assert_eq!(expired.code(), tonic::Code::NotFound);
    assert!(expired.message().contains("expired"), "{expired}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_sql_shell_keeps_its_settings_on_a_server() {
    let server = TestServer::start().await;
    let default_ef = default_of(&server, "quiver.ef").await;
    let options = ConnectOptions {
        url: format!("grpc://{}", server.addr()),
        ..ConnectOptions::default()
    };
    let mut shell = RemoteClient::connect(&options).await.expect("connect");
    shell.run("SET quiver.ef = 72").await.expect("set");
    let (_, batches) = shell.run("SHOW quiver.ef").await.expect("show");
    assert_eq!(quiver_tests::format_rows(&batches)[0][1], "72");
    let mut other = RemoteClient::connect(&options).await.expect("connect");
    let (_, batches) = other.run("SHOW quiver.ef").await.expect("show");
    assert_eq!(quiver_tests::format_rows(&batches)[0][1], default_ef);
    shell.close().await.expect("close");
    other.close().await.expect("close");
    server.shutdown().await;
}
