//! Flight SQL sessions: settings a client keeps across its statements.
//!
//! - [`cookie`]: the `arrow_flight_session_id` cookie, read from requests and set on responses;
//! - [`store`]: the open sessions, per caller, expiring when idle and bounded in number;
//! - [`options`]: the `SetSessionOptions`, `GetSessionOptions` and `CloseSession` actions.

pub mod cookie;
pub mod options;
pub mod store;

pub use cookie::{session_cookies, SessionCookies, SESSION_COOKIE};
pub use store::{RequestSession, Sessions};
