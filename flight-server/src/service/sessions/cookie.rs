//! The session cookie on the wire: a layer around the gRPC service that reads the
//! `arrow_flight_session_id` cookie a client sends and writes the `Set-Cookie` header of a
//! session a handler opened or closed.
//!
//! A handler learns the cookie, and says what to answer, through the [`CookieSlot`] the layer
//! puts in each request's extensions; the layer adds the header once the handler's response is
//! ready (before any streamed data), so it reaches the client with the response headers.

use std::sync::{Arc, Mutex};

use tonic::codegen::http::header::{COOKIE, SET_COOKIE};
use tonic::codegen::http::{HeaderMap, HeaderValue, Request as HttpRequest};
use tonic::Request;

use crate::service::header_layer::{AroundCall, HeaderLayer};

/// The cookie that names a Flight SQL session (the name the Flight SQL specification suggests).
pub const SESSION_COOKIE: &str = "arrow_flight_session_id";

/// What the response says about the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Nothing: the client keeps what it has.
    Keep,
    /// A session was opened: the client is to send this id from now on.
    Open(String),
    /// The session was closed: the client is to forget its cookie.
    Clear,
}

/// One request's session cookie: the id the client sent, and what the response will answer.
#[derive(Debug, Clone)]
pub struct CookieSlot {
    sent: Option<String>,
    answer: Arc<Mutex<Answer>>,
}

impl CookieSlot {
    fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            sent: sent_cookie(headers),
            answer: Arc::new(Mutex::new(Answer::Keep)),
        }
    }

    /// The slot of `request`: the one the layer made, or (where no layer runs) one read from the
    /// request's headers whose answer goes nowhere.
    pub fn of<T>(request: &Request<T>) -> Self {
        request
            .extensions()
            .get::<CookieSlot>()
            .cloned()
            .unwrap_or_else(|| Self::from_headers(request.metadata().as_ref()))
    }

    /// The session id the client sent, if any.
    pub fn sent(&self) -> Option<&str> {
        self.sent.as_deref()
    }

    /// Tells the client, with this response, to send `id` from now on.
    pub fn open(&self, id: &str) {
        *self.lock() = Answer::Open(id.to_string());
    }

    /// Tells the client, with this response, to forget its session cookie.
    pub fn clear(&self) {
        *self.lock() = Answer::Clear;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answer> {
        self.answer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Set-Cookie` header the response carries, if any.
    pub(crate) fn set_cookie(&self) -> Option<HeaderValue> {
        let text = match &*self.lock() {
            Answer::Keep => return None,
            Answer::Open(id) => format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly"),
            Answer::Clear => format!("{SESSION_COOKIE}=; Path=/; Max-Age=0"),
        };
        HeaderValue::from_str(&text).ok()
    }
}

/// The value of the session cookie among a request's `cookie` headers.
fn sent_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The session id a `Set-Cookie` header value opens (`None` when it names another cookie or
/// clears the session): what a client keeps and sends back.
pub fn opened_session(set_cookie: &str) -> Option<&str> {
    let (name, value) = set_cookie.split(';').next()?.trim().split_once('=')?;
    (name == SESSION_COOKIE && !value.is_empty()).then_some(value)
}

/// The layer: wraps the gRPC service (see the module doc).
pub type SessionCookies<S> = HeaderLayer<S, CookieExchange>;

/// Wraps `inner` in [`SessionCookies`].
pub fn session_cookies<S>(inner: S) -> SessionCookies<S> {
    HeaderLayer::new(inner, CookieExchange)
}

/// What [`SessionCookies`] does: gives each request its [`CookieSlot`], and answers with the
/// `Set-Cookie` its handler asked for.
#[derive(Debug, Clone, Copy)]
pub struct CookieExchange;

impl AroundCall for CookieExchange {
    type Carry = CookieSlot;

    fn before<B>(&self, request: &mut HttpRequest<B>) -> CookieSlot {
        let slot = CookieSlot::from_headers(request.headers());
        request.extensions_mut().insert(slot.clone());
        slot
    }

    fn after(slot: CookieSlot, headers: &mut HeaderMap) {
        if let Some(value) = slot.set_cookie() {
            headers.append(SET_COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for cookie in cookies {
            map.append(COOKIE, HeaderValue::from_str(cookie).expect("header"));
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(sent_cookie(&headers(&[])), None);
        assert_eq!(sent_cookie(&headers(&["theme=dark"])), None);
        assert_eq!(
            sent_cookie(&headers(&["theme=dark; arrow_flight_session_id=abc"])).as_deref(),
            Some("abc")
        );
        assert_eq!(
            sent_cookie(&headers(&["a=1", "arrow_flight_session_id=xyz"])).as_deref(),
            Some("xyz")
        );
    }

    #[test]
    fn the_answer_is_what_the_handler_said_last() {
        let slot = CookieSlot::from_headers(&headers(&[]));
        assert_eq!(slot.set_cookie(), None);
        slot.open("abc");
        let opened = slot.set_cookie().expect("set-cookie");
        assert_eq!(opened_session(opened.to_str().expect("text")), Some("abc"));
        slot.clear();
        let cleared = slot.set_cookie().expect("set-cookie");
        assert!(cleared.to_str().expect("text").contains("Max-Age=0"));
        assert_eq!(opened_session(cleared.to_str().expect("text")), None);
        assert_eq!(opened_session("theme=dark"), None);
    }
}
