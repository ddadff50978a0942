//! The client side of `quiver sql --connect`: a Flight SQL client that runs statements on a
//! server and brings back their results.
//!
//! Invariants: statements are split on the client with the SQL tokenizer (so `;` inside quotes
//! or comments never splits) and sent one at a time, in order, stopping at the first error; an
//! error is reported with the server's message only. The client opens a session when it
//! connects and sends its cookie with every call, so `SET` lasts across statements as it does
//! in embedded mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::Action;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::TryStreamExt;
use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::service::sessions::cookie::opened_session;
use crate::service::sessions::options::{
    CloseSessionRequest, SetSessionOptionsRequest, CLOSE_SESSION, SET_SESSION_OPTIONS,
};
use crate::service::sessions::SESSION_COOKIE;

/// How to reach and authenticate to a server.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `grpc://host:port` or `grpc+tls://host:port`.
    pub url: String,
    /// Basic credentials, exchanged for a token in the handshake.
    pub user: Option<(String, String)>,
    /// A bearer token to send as is.
    pub token: Option<String>,
    /// A PEM file with the CA that signed the server's certificate (for `grpc+tls://`).
    pub tls_ca: Option<PathBuf>,
}

/// Errors of the remote client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one this client understands.
    #[error("invalid server URL '{0}': expected grpc://host:port or grpc+tls://host:port")]
    Url(String),
    /// Connecting failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The server.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// Reading the CA file failed.
    #[error("cannot read '{path}': {source}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server refused or failed a call: its message.
    #[error("{0}")]
    Server(String),
    /// The SQL could not be split into statements.
    #[error("{0}")]
    Sql(String),
}

impl From<FlightError> for ClientError {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(status) => ClientError::Server(status.message().to_string()),
            other => ClientError::Server(other.to_string()),
        }
    }
}

impl From<ArrowError> for ClientError {
    fn from(e: ArrowError) -> Self {
        ClientError::Server(e.to_string())
    }
}

/// A connection to a Quiver server.
#[derive(Debug)]
pub struct RemoteClient {
    url: String,
    client: FlightSqlServiceClient<Channel>,
    /// The session the server opened for this client, if it did.
    session: Option<String>,
}

impl RemoteClient {
    /// Connects (and authenticates, when credentials are given).
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClientError> {
        let (uri, tls) = if let Some(rest) = options.url.strip_prefix("grpc+tls://") {
            (format!("https://{rest}"), true)
        } else if let Some(rest) = options.url.strip_prefix("grpc://") {
            (format!("http://{rest}"), false)
        } else {
            return Err(ClientError::Url(options.url.clone()));
        };
        let connect_error = |source| ClientError::Connect {
            url: options.url.clone(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|_| ClientError::Url(options.url.clone()))?
            .connect_timeout(Duration::from_secs(20))
            .tcp_nodelay(true);
        if tls {
            crate::tls::install_crypto_provider();
            let mut config = ClientTlsConfig::new();
            if let Some(path) = &options.tls_ca {
                let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
                    path: path.display().to_string(),
                    source,
                })?;
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(config).map_err(connect_error)?;
        }
        let channel = endpoint.connect().await.map_err(connect_error)?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut client = FlightSqlServiceClient::new_from_inner(inner);
        if let Some((user, password)) = &options.user {
            client.handshake(user, password).await?;
        }
        if let Some(token) = &options.token {
            client.set_token(token.clone());
        }
        let mut remote = Self {
            url: options.url.clone(),
            client,
            session: None,
        };
        remote.open_session().await?;
        Ok(remote)
    }

    /// Opens a session on the server (`SetSessionOptions` with no options) and sends its cookie
    /// from now on.
    async fn open_session(&mut self) -> Result<(), ClientError> {
        let metadata = self
            .action(
                SET_SESSION_OPTIONS,
                SetSessionOptionsRequest::default().encode_to_vec(),
            )
            .await?;
        let session = metadata
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(opened_session)
            .map(str::to_string);
        if let Some(id) = &session {
            self.client
                .set_header("cookie", format!("{SESSION_COOKIE}={id}"));
        }
        self.session = session;
        Ok(())
    }

    /// Closes the session on the server (if it opened one); its settings are gone.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        if self.session.is_none() {
            return Ok(());
        }
        self.action(
            CLOSE_SESSION,
            CloseSessionRequest::default().encode_to_vec(),
        )
        .await?;
        self.session = None;
        Ok(())
    }

    /// Runs a Flight action whose result it does not need; returns the response's headers.
    async fn action(&mut self, kind: &str, body: Vec<u8>) -> Result<MetadataMap, ClientError> {
        let request = self.request(Action {
            r#type: kind.to_string(),
            body: body.into(),
        })?;
        let server_error =
            |status: tonic::Status| ClientError::Server(status.message().to_string());
        let response = self
            .client
            .inner_mut()
            .do_action(request)
            .await
            .map_err(server_error)?;
        let metadata = response.metadata().clone();
        let _results: Vec<_> = response
            .into_inner()
            .try_collect()
            .await
            .map_err(server_error)?;
        Ok(metadata)
    }

    /// A request for a call made on the raw Flight client, with the token and the session
    /// cookie the Flight SQL client would add.
    fn request<T>(&self, body: T) -> Result<tonic::Request<T>, ClientError> {
        let mut request = tonic::Request::new(body);
        let header = |text: String| {
            MetadataValue::try_from(text).map_err(|e| ClientError::Server(e.to_string()))
        };
        if let Some(token) = self.client.token() {
            request
                .metadata_mut()
                .insert("authorization", header(format!("Bearer {token}"))?);
        }
        if let Some(id) = &self.session {
            request
                .metadata_mut()
                .insert("cookie", header(format!("{SESSION_COOKIE}={id}"))?);
        }
        Ok(request)
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one statement; returns its result schema and batches.
    pub async fn run(&mut self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), ClientError> {
        let info = self.client.execute(sql.to_string(), None).await?;
        let schema = Arc::new(info.clone().try_decode_schema()?);
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let stream = self.client.do_get(ticket).await?;
            let mut received: Vec<RecordBatch> = stream.try_collect().await?;
            batches.append(&mut received);
        }
        Ok((schema, batches))
    }
}

/// Splits a script into its statements' text, on `;` outside quotes and comments.
pub fn split_statements(sql: &str) -> Result<Vec<String>, ClientError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| ClientError::Sql(e.to_string()))?;
    let mut statements = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    for token in tokens {
        match token.token {
            Token::SemiColon => {
                let end = byte_offset(sql, token.span.start.line, token.span.start.column);
                if has_code {
                    statements.push(sql[start..end].trim().to_string());
                }
                start = (end + 1).min(sql.len());
                has_code = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => has_code = true,
        }
    }
    if has_code {
        statements.push(sql[start..].trim().to_string());
    }
    Ok(statements)
}

/// The byte offset of a 1-based (line, column-in-characters) location.
fn byte_offset(sql: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, text) in sql.split_inclusive('\n').enumerate() {
        if (i as u64) + 1 == line {
            let skip = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
            return offset
                + text
                    .char_indices()
                    .nth(skip)
                    .map(|(at, _)| at)
                    .unwrap_or(text.len());
        }
        offset += text.len();
    }
    sql.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_outside_quotes_and_comments() {
        let parts = split_statements(
            "SELECT 'a;b' AS x; -- a comment; with a semicolon\nINSERT INTO t VALUES (1);\n;  ",
        )
        .expect("split");
        assert_eq!(
            parts,
            [
                "SELECT 'a;b' AS x",
                "-- a comment; with a semicolon\nINSERT INTO t VALUES (1)"
            ]
        );
        assert_eq!(
            split_statements("-- only a comment").expect("split").len(),
            0
        );
        assert_eq!(
            split_statements("SELECT 'it''s';\nSELECT 'é'; SELECT 2").expect("split"),
            ["SELECT 'it''s'", "SELECT 'é'", "SELECT 2"]
        );
        assert!(split_statements("SELECT 'unterminated").is_err());
    }
}
