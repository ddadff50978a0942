//! Error statuses as they reach the client, set right by a layer around the gRPC service.
//!
//! - Malformed Flight SQL commands are `INVALID_ARGUMENT`. arrow-flight's Flight SQL dispatch
//!   decodes a command in two steps: the `google.protobuf.Any` around it (a failure is
//!   `INVALID_ARGUMENT`), then the message its type URL names, and a failure of that step (a
//!   known type URL with a body that does not decode) it answers as `INTERNAL`, with the
//!   decoder's `ParseError(...)`. That is the client's malformed input, not a fault of the
//!   server.
//! - Messages are cut to [`MAX_MESSAGE_BYTES`]: some echo the client's input (an unknown
//!   command's type URL), and gRPC clients drop a response whose headers pass 8 KiB, so the
//!   client would see a transport error instead of the server's.
//!
//! An error answered before any data (every refused request: a command is decoded first) is in
//! the response's headers, where this layer reads and rewrites it.

use tonic::codegen::http::{HeaderMap, Request as HttpRequest};
use tonic::{Code, Status};

use crate::service::header_layer::{AroundCall, HeaderLayer};

/// How arrow-flight's message for an undecodable command begins.
const PARSE_ERROR: &str = "ParseError(";

/// The longest error message sent, in bytes (before the header's percent-encoding, which may
/// triple it).
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// The layer: wraps the gRPC service (see the module doc).
pub type ErrorStatuses<S> = HeaderLayer<S, StatusRewrite>;

/// Wraps `inner` in [`ErrorStatuses`].
pub fn error_statuses<S>(inner: S) -> ErrorStatuses<S> {
    HeaderLayer::new(inner, StatusRewrite)
}

/// What [`ErrorStatuses`] does: rewrites a refused response's status.
#[derive(Debug, Clone, Copy)]
pub struct StatusRewrite;

impl AroundCall for StatusRewrite {
    type Carry = ();

    fn before<B>(&self, _request: &mut HttpRequest<B>) {}

    fn after((): (), headers: &mut HeaderMap) {
        if let Some(status) = rewritten(headers) {
            // Writing the status replaces the headers' `grpc-status` and `grpc-message`.
            let _ = status.add_header(headers);
        }
    }
}

/// The status `headers` should carry instead of theirs, if any.
fn rewritten(headers: &HeaderMap) -> Option<Status> {
    let status = Status::from_header_map(headers)?;
    if status.code() == Code::Ok {
        return None;
    }
    if let Some(detail) = undecodable_command(&status) {
        return Some(Status::invalid_argument(cut(format!(
            "malformed Flight SQL command: {detail}"
        ))));
    }
    (status.message().len() > MAX_MESSAGE_BYTES)
        .then(|| Status::new(status.code(), cut(status.message().to_string())))
}

/// What did not decode, if `status` is arrow-flight's `INTERNAL` for a command that did not.
fn undecodable_command(status: &Status) -> Option<&str> {
    if status.code() != Code::Internal {
        return None;
    }
    let detail = status.message().strip_prefix(PARSE_ERROR)?;
    Some(detail.strip_suffix(')').unwrap_or(detail).trim_matches('"'))
}

/// `message` cut to [`MAX_MESSAGE_BYTES`], saying how much was left out.
fn cut(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let left_out = message.len();
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    format!("{message}... ({} more bytes)", left_out - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(status: Status) -> HeaderMap {
        let mut headers = HeaderMap::new();
        status.add_header(&mut headers).expect("headers");
        headers
    }

    #[test]
    fn an_undecodable_command_is_an_invalid_argument() {
        let headers = headers_of(Status::internal(
            "ParseError(\"Unable to decode Any value: invalid wire type value: 7\")",
        ));
        let status = rewritten(&headers).expect("rewritten");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "malformed Flight SQL command: Unable to decode Any value: invalid wire type value: 7"
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let echoed = format!("The defined request is invalid: {}", "x".repeat(10_000));
        let status = rewritten(&headers_of(Status::unimplemented(echoed.clone()))).expect("cut");
        assert_eq!(status.code(), Code::Unimplemented);
        assert!(status.message().starts_with(&echoed[..MAX_MESSAGE_BYTES]));
        let more = echoed.len() - MAX_MESSAGE_BYTES;
        assert!(status
            .message()
            .ends_with(&format!("... ({more} more bytes)")));
        // Cut on a character's boundary.
        let wide = "é".repeat(MAX_MESSAGE_BYTES);
        let status = rewritten(&headers_of(Status::not_found(wide))).expect("cut");
        assert!(status.message().len() <= MAX_MESSAGE_BYTES + 32);
    }

    #[test]
    fn other_statuses_are_kept() {
        for status in [
            Status::internal("the result does not have the schema"),
            Status::invalid_argument("ParseError(\"x\")"),
            Status::not_found("x".repeat(MAX_MESSAGE_BYTES)),
            Status::ok(""),
        ] {
            assert!(rewritten(&headers_of(status)).is_none());
        }
        assert!(rewritten(&HeaderMap::new()).is_none());
    }
}
