//! The open sessions: one [`QuiverSession`] per client session, found by its cookie.
//!
//! Invariants:
//! - A session belongs to the caller who opened it: to anyone else its id does not exist, so a
//!   cookie is not a credential.
//! - A session idle for longer than [`SessionLimits::idle_timeout`] is gone: its id answers
//!   `NOT_FOUND`, as the Flight SQL specification asks of an expired session.
//! - At most [`SessionLimits::max_sessions`] are open; opening one more (after dropping the
//!   expired ones) is refused with `RESOURCE_EXHAUSTED`, never by closing someone else's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use quiver_planner::QuiverSession;
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::config::SessionLimits;
use crate::service::sessions::cookie::CookieSlot;

/// One client session.
#[derive(Debug)]
pub struct FlightSession {
    owner: Option<String>,
    session: QuiverSession,
    last_used: Mutex<Instant>,
}

impl FlightSession {
    /// The SQL session whose settings the client keeps.
    pub fn session(&self) -> &QuiverSession {
        &self.session
    }

    fn touch(&self, now: Instant) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    fn idle_since(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The open sessions.
#[derive(Debug)]
pub struct Sessions {
    limits: SessionLimits,
    entries: Mutex<HashMap<String, Arc<FlightSession>>>,
}

/// The session a request belongs to: the one its cookie names, or none yet.
#[derive(Debug, Clone)]
pub struct RequestSession {
    caller: Caller,
    cookie: CookieSlot,
    current: Option<Arc<FlightSession>>,
}

impl RequestSession {
    /// The session's SQL session, if the request has one.
    pub fn session(&self) -> Option<&QuiverSession> {
        self.current.as_ref().map(|s| s.session())
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl Sessions {
    /// No sessions yet, within `limits`.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<FlightSession>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session `request` names with its cookie (none without a cookie). A cookie naming no
    /// open session of `caller` is refused with `NOT_FOUND`.
    pub fn of_request<T>(
        &self,
        request: &Request<T>,
        caller: Caller,
    ) -> Result<RequestSession, Status> {
        let cookie = CookieSlot::of(request);
        let current = match cookie.sent() {
            None => None,
            Some(id) => Some(self.find(id, &caller)?),
        };
        Ok(RequestSession {
            caller,
            cookie,
            current,
        })
    }

    fn find(&self, id: &str, caller: &Caller) -> Result<Arc<FlightSession>, Status> {
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(found) = entries.get(id).filter(|s| caller.owns(&s.owner)).cloned() else {
            return Err(unknown_session());
        };
        if now.duration_since(found.idle_since()) >= self.limits.idle_timeout {
            entries.remove(id);
            return Err(Status::not_found(format!(
                "the session expired after {} idle; open a new connection",
                humantime::format_duration(self.limits.idle_timeout)
            )));
        }
        found.touch(now);
        Ok(found)
    }

    /// The request's session, opening one with `make` if it has none; a new session's cookie
    /// goes back with the response.
    pub fn open(
        &self,
        request: &mut RequestSession,
        make: impl FnOnce() -> QuiverSession,
    ) -> Result<QuiverSession, Status> {
        if let Some(current) = &request.current {
            return Ok(current.session().clone());
        }
        let now = Instant::now();
        let mut entries = self.lock();
        let idle = self.limits.idle_timeout;
        entries.retain(|_, s| now.duration_since(s.idle_since()) < idle);
        if entries.len() >= self.limits.max_sessions {
            return Err(Status::resource_exhausted(format!(
                "too many open sessions ({}); close a connection or wait for idle sessions to \
                 expire ({} idle)",
                self.limits.max_sessions,
                humantime::format_duration(idle)
            )));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let opened = Arc::new(FlightSession {
            owner: request.caller.user.clone(),
            session: make(),
            last_used: Mutex::new(now),
        });
        entries.insert(id.clone(), opened.clone());
        drop(entries);
        request.cookie.open(&id);
        request.current = Some(opened.clone());
        Ok(opened.session().clone())
    }

    /// Closes the request's session and tells the client to forget its cookie. `NOT_FOUND`
    /// when the request names no session.
    pub fn close(&self, request: &RequestSession) -> Result<(), Status> {
        let Some(id) = request.cookie.sent() else {
            return Err(Status::not_found("this connection has no session to close"));
        };
        let removed = {
            let mut entries = self.lock();
            match entries.get(id) {
                Some(s) if request.caller.owns(&s.owner) => entries.remove(id).is_some(),
                _ => false,
            }
        };
        if !removed {
            return Err(unknown_session());
        }
        request.cookie.clear();
        Ok(())
    }

    /// How many sessions are open (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn unknown_session() -> Status {
    Status::not_found("no such session: it was closed or has expired; open a new connection")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quiver_catalog::location::DataRoot;
    use quiver_catalog::Catalog;
    use tonic::metadata::MetadataValue;

    use super::*;
    use crate::service::sessions::cookie::opened_session;

    async fn new_session() -> (tempfile::TempDir, QuiverSession) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = DataRoot::open(dir.path().to_str().expect("utf-8"))
            .await
            .expect("root");
        let catalog = Catalog::open(root).await.expect("catalog");
        (dir, QuiverSession::new(Arc::new(catalog)))
    }

    fn user(name: &str) -> Caller {
        Caller {
            user: Some(name.to_string()),
        }
    }

    /// A request carrying `cookie` (as a client that kept it sends it).
    fn request(cookie: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(id) = cookie {
            let value =
                MetadataValue::try_from(format!("arrow_flight_session_id={id}")).expect("header");
            request.metadata_mut().insert("cookie", value);
        }
        request
    }

    /// Opens a session for `caller` and returns its id.
    fn open(sessions: &Sessions, caller: Caller, session: &QuiverSession) -> String {
        let mut current = sessions
            .of_request(&request(None), caller)
            .expect("no cookie");
        sessions
            .open(&mut current, || session.clone())
            .expect("open");
        let header = current.cookie.set_cookie().expect("a new session's cookie");
        opened_session(header.to_str().expect("text"))
            .expect("the session id")
            .to_string()
    }

    #[tokio::test]
    async fn a_session_is_found_by_its_owner_only() {
        let (_dir, session) = new_session().await;
        let sessions = Sessions::new(SessionLimits::default());
        let id = open(&sessions, user("alice"), &session);
        let found = sessions
            .of_request(&request(Some(&id)), user("alice"))
            .expect("alice's session");
        assert!(found.session().is_some());
        let refused = sessions
            .of_request(&request(Some(&id)), user("bob"))
            .expect_err("not bob's");
        assert_eq!(refused.code(), tonic::Code::NotFound);
        let unknown = sessions
            .of_request(&request(Some("nope")), user("alice"))
            .expect_err("unknown");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        let none = sessions
            .of_request(&request(None), user("alice"))
            .expect("no cookie, no session");
        assert!(none.session().is_none());
    }

    #[tokio::test]
    async fn sessions_expire_when_idle_and_are_bounded() {
        let (_dir, session) = new_session().await;
        let sessions = Sessions::new(SessionLimits {
            idle_timeout: Duration::from_millis(50),
            max_sessions: 2,
        });
        let first = open(&sessions, user("alice"), &session);
        open(&sessions, user("bob"), &session);
        let mut third = sessions
            .of_request(&request(None), user("carol"))
            .expect("no cookie");
        let full = sessions
            .open(&mut third, || session.clone())
            .expect_err("full");
        assert_eq!(full.code(), tonic::Code::ResourceExhausted);
        std::thread::sleep(Duration::from_millis(60));
        let expired = sessions
            .of_request(&request(Some(&first)), user("alice"))
            .expect_err("expired");
        assert_eq!(expired.code(), tonic::Code::NotFound);
        assert!(expired.message().contains("expired"), "{expired}");
        sessions
            .open(&mut third, || session.clone())
            .expect("room once the idle sessions are dropped");
        assert_eq!(sessions.len(), 1);
    }

    #[tokio::test]
    async fn a_closed_session_is_gone() {
        let (_dir, session) = new_session().await;
        let sessions = Sessions::new(SessionLimits::default());
        let id = open(&sessions, user("alice"), &session);
        let theirs = sessions
            .of_request(&request(Some(&id)), user("alice"))
            .expect("found");
        sessions.close(&theirs).expect("close");
        assert!(theirs
            .cookie
            .set_cookie()
            .expect("cleared")
            .to_str()
            .expect("text")
            .contains("Max-Age=0"));
        assert!(sessions.is_empty());
        assert_eq!(
            sessions.close(&theirs).expect_err("closed").code(),
            tonic::Code::NotFound
        );
    }
}
