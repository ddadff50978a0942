//! Authentication: basic credentials exchanged for a bearer token in the Flight handshake, or a
//! token configured on the command line.
//!
//! Invariants:
//! - With auth on, every RPC must carry valid credentials in its `authorization` header: the
//!   [`interceptor`] rejects anything else before the request is decoded, including calls to
//!   RPCs the service does not implement, and each handler checks again (so the service is safe
//!   even when served without the interceptor).
//! - A ticket, statement handle or prepared statement handle is never a credential: handlers also
//!   check that the caller owns the statement a handle names.
//! - Issued tokens are random (UUID v4 from the OS generator), expire after [`TOKEN_LIFETIME`], and
//!   live only in this process: a restarted server forgets them.
//! - Passwords and tokens are compared in constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// How long a token issued by the handshake stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Who may call the server.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// A user and password accepted as basic credentials (in the handshake or on any call).
    pub user: Option<(String, String)>,
    /// A fixed bearer token accepted on any call, for clients that cannot handshake.
    pub token: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user; `None` when auth is off.
    pub user: Option<String>,
}

impl Caller {
    /// Whether this caller may use something created by `owner`.
    pub fn owns(&self, owner: &Option<String>) -> bool {
        &self.user == owner
    }
}

#[derive(Debug)]
struct Issued {
    user: String,
    expires: Instant,
}

/// Checks credentials and issues tokens.
#[derive(Debug, Default)]
pub struct Authenticator {
    config: Option<AuthConfig>,
    tokens: Mutex<HashMap<String, Issued>>,
}

/// The user a configured static token authenticates as (not a possible basic-auth user name
/// clash: user names come from the command line, and this one is reserved).
pub const TOKEN_USER: &str = "<token>";

impl Authenticator {
    /// An authenticator; `None` lets everyone in.
    pub fn new(config: Option<AuthConfig>) -> Self {
        Self {
            config,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The caller of a request with these headers, or `Unauthenticated`.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(config) = &self.config else {
            return Ok(Caller { user: None });
        };
        let value = metadata
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "authentication required: send basic credentials in the handshake, then the bearer token it returns",
                )
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        if let Some(token) = strip_scheme(value, "Bearer") {
            return self.check_token(config, token);
        }
        if let Some(encoded) = strip_scheme(value, "Basic") {
            let (user, password) = decode_basic(encoded)?;
            return check_password(config, &user, &password);
        }
        Err(Status::unauthenticated(
            "unsupported authorization scheme: use Basic or Bearer",
        ))
    }

    /// Authenticates a request (see [`Self::authenticate`]).
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.authenticate(request.metadata())
    }

    /// The handshake: checks the caller's credentials and returns a new bearer token. With auth
    /// off every handshake succeeds (the token is then never checked).
    pub fn handshake(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let caller = self.authenticate(metadata)?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        if let Some(user) = caller.user {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            tokens.retain(|_, issued| issued.expires > now);
            tokens.insert(
                token.clone(),
                Issued {
                    user,
                    expires: now + TOKEN_LIFETIME,
                },
            );
        }
        Ok(token)
    }

    fn check_token(&self, config: &AuthConfig, token: &str) -> Result<Caller, Status> {
        if let Some(fixed) = &config.token {
            if constant_time_eq(fixed.as_bytes(), token.as_bytes()) {
                return Ok(Caller {
                    user: Some(TOKEN_USER.to_string()),
                });
            }
        }
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(token) {
            Some(issued) if issued.expires > Instant::now() => Ok(Caller {
                user: Some(issued.user.clone()),
            }),
            Some(_) => Err(Status::unauthenticated(
                "token expired: handshake again for a new one",
            )),
            None => Err(Status::unauthenticated("invalid token")),
        }
    }
}

fn check_password(config: &AuthConfig, user: &str, password: &str) -> Result<Caller, Status> {
    match &config.user {
        Some((expected_user, expected_password))
            if constant_time_eq(expected_user.as_bytes(), user.as_bytes())
                & constant_time_eq(expected_password.as_bytes(), password.as_bytes()) =>
        {
            Ok(Caller {
                user: Some(user.to_string()),
            })
        }
        _ => Err(Status::unauthenticated("invalid user name or password")),
    }
}

/// The credentials after `scheme ` (scheme matched case-insensitively).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Standard base64 with or without padding (Go's Flight client sends it unpadded).
const BASIC_ENCODING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn decode_basic(encoded: &str) -> Result<(String, String), Status> {
    let raw = BASIC_ENCODING
        .decode(encoded)
        .map_err(|_| Status::unauthenticated("malformed basic credentials"))?;
    let text = String::from_utf8(raw)
        .map_err(|_| Status::unauthenticated("malformed basic credentials"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| Status::unauthenticated("malformed basic credentials"))?;
    Ok((user.to_string(), password.to_string()))
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A tonic interceptor that rejects every request without valid credentials.
pub fn interceptor(
    auth: Arc<Authenticator>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        auth.authenticate(request.metadata())?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn headers(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(
            "authorization",
            MetadataValue::try_from(value).expect("ascii header"),
        );
        map
    }

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    fn auth() -> Authenticator {
        Authenticator::new(Some(AuthConfig {
            user: Some(("alice".into(), "s3cret".into())),
            token: Some("fixed-token".into()),
        }))
    }

    #[test]
    fn handshake_exchanges_a_password_for_a_working_token() {
        let auth = auth();
        let token = auth
            .handshake(&headers(&basic("alice", "s3cret")))
            .expect("valid credentials");
        let caller = auth
            .authenticate(&headers(&format!("Bearer {token}")))
            .expect("issued token");
        assert_eq!(caller.user.as_deref(), Some("alice"));
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("alice:s3cret");
        assert!(auth
            .authenticate(&headers(&format!("Basic {unpadded}")))
            .is_ok());
        let fixed = auth
            .authenticate(&headers("bearer fixed-token"))
            .expect("configured token");
        assert_eq!(fixed.user.as_deref(), Some(TOKEN_USER));
    }

    #[test]
    fn wrong_or_missing_credentials_are_unauthenticated() {
        let auth = auth();
        for value in [
            basic("alice", "wrong"),
            basic("mallory", "s3cret"),
            "Bearer nope".to_string(),
            "Basic !!!".to_string(),
            "Digest abc".to_string(),
        ] {
            let err = auth.handshake(&headers(&value)).expect_err(&value);
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{value}");
        }
        let err = auth
            .authenticate(&MetadataMap::new())
            .expect_err("no header");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn without_auth_everyone_is_anonymous() {
        let auth = Authenticator::new(None);
        let caller = auth.authenticate(&MetadataMap::new()).expect("open");
        assert_eq!(caller.user, None);
        assert!(caller.owns(&None));
        assert!(auth.handshake(&MetadataMap::new()).is_ok());
    }
}
