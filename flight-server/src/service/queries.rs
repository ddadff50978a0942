//! Statements between `GetFlightInfo` and the end of their `DoGet`: the server side of a ticket.
//!
//! Invariants:
//! - A ticket names an entry by a random handle and is redeemed at most once: `DoGet` takes the
//!   pending work out of the registry, so replaying a ticket cannot run a statement twice.
//! - Only the caller that created an entry may redeem or cancel it (a ticket is not a
//!   credential); to anyone else the handle does not exist.
//! - Pending entries nobody redeems expire after the registry's time to live; running entries
//!   stay until their stream ends or is dropped (a client disconnecting drops it), and can be
//!   cancelled at any moment through their token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow_flight::CancelStatus;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use tokio_util::sync::CancellationToken;

use crate::auth::Caller;
use crate::error::FlightServerError;
use crate::service::execution::Frame;

/// How long an unredeemed ticket stays valid.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// The work behind a ticket.
pub enum Work {
    /// Queries to run, in order, when the ticket is redeemed (one per bound parameter set).
    Query(Vec<Frame>),
    /// A result computed already (a write's row count).
    Done(Vec<RecordBatch>),
}

/// A planned statement waiting for its `DoGet`.
pub struct Pending {
    /// The schema announced in the `FlightInfo`.
    pub schema: SchemaRef,
    /// What to stream.
    pub work: Work,
}

enum State {
    Pending(Pending),
    Running(CancellationToken),
}

struct Entry {
    owner: Option<String>,
    created: Instant,
    state: State,
}

/// The registry of tickets.
#[derive(Default)]
pub struct QueryRegistry {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for QueryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRegistry")
            .field("entries", &self.lock().len())
            .finish()
    }
}

/// A redeemed ticket whose results are streaming; dropping it removes the entry.
pub struct Running {
    registry: Arc<QueryRegistry>,
    handle: String,
    /// Fires when the query is cancelled.
    pub cancel: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.handle);
    }
}

impl QueryRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers planned work for `caller` and returns its handle.
    pub fn register(&self, caller: &Caller, pending: Pending) -> String {
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let mut entries = self.lock();
        let now = Instant::now();
        entries.retain(|_, e| {
            matches!(e.state, State::Running(_)) || now.duration_since(e.created) < TICKET_LIFETIME
        });
        entries.insert(
            handle.clone(),
            Entry {
                owner: caller.user.clone(),
                created: now,
                state: State::Pending(pending),
            },
        );
        handle
    }

    /// Redeems a ticket: takes its pending work and marks it running.
    pub fn start(
        self: &Arc<Self>,
        handle: &str,
        caller: &Caller,
    ) -> Result<(Pending, Running), FlightServerError> {
        let unknown = || FlightServerError::UnknownStatement {
            handle: handle.to_string(),
        };
        let mut entries = self.lock();
        let entry = entries
            .get_mut(handle)
            .filter(|e| caller.owns(&e.owner))
            .ok_or_else(unknown)?;
        if !matches!(entry.state, State::Pending(_)) {
            return Err(unknown());
        }
        let cancel = CancellationToken::new();
        let State::Pending(pending) =
            std::mem::replace(&mut entry.state, State::Running(cancel.clone()))
        else {
            return Err(unknown());
        };
        Ok((
            pending,
            Running {
                registry: self.clone(),
                handle: handle.to_string(),
                cancel,
            },
        ))
    }

    /// Cancels a statement: a pending one is dropped, a running one is stopped.
    pub fn cancel(&self, handle: &str, caller: &Caller) -> CancelStatus {
        let mut entries = self.lock();
        let Some(entry) = entries.get(handle).filter(|e| caller.owns(&e.owner)) else {
            return CancelStatus::NotCancellable;
        };
        match &entry.state {
            State::Running(token) => {
                token.cancel();
                CancelStatus::Cancelling
            }
            State::Pending(_) => {
                entries.remove(handle);
                CancelStatus::Cancelled
            }
        }
    }

    /// Cancels everything: used at shutdown.
    pub fn cancel_all(&self) {
        let mut entries = self.lock();
        entries.retain(|_, e| match &e.state {
            State::Running(token) => {
                token.cancel();
                true
            }
            State::Pending(_) => false,
        });
    }

    /// How many statements are pending or running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no statement is pending or running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;

    fn done() -> Pending {
        Pending {
            schema: Arc::new(Schema::empty()),
            work: Work::Done(vec![]),
        }
    }

    fn user(name: &str) -> Caller {
        Caller {
            user: Some(name.to_string()),
        }
    }

    #[test]
    fn a_ticket_is_redeemed_once_and_only_by_its_owner() {
        let registry = Arc::new(QueryRegistry::default());
        let handle = registry.register(&user("alice"), done());
        assert!(registry.start(&handle, &user("bob")).is_err());
        let (_, running) = registry.start(&handle, &user("alice")).expect("owner");
        assert!(registry.start(&handle, &user("alice")).is_err());
        drop(running);
        assert!(registry.is_empty());
    }

    #[test]
    fn cancelling_drops_pending_work_and_signals_running_work() {
        let registry = Arc::new(QueryRegistry::default());
        let pending = registry.register(&user("alice"), done());
        assert_eq!(
            registry.cancel(&pending, &user("bob")),
            CancelStatus::NotCancellable
        );
        assert_eq!(
            registry.cancel(&pending, &user("alice")),
            CancelStatus::Cancelled
        );
        assert!(registry.start(&pending, &user("alice")).is_err());

        let handle = registry.register(&user("alice"), done());
        let (_, running) = registry.start(&handle, &user("alice")).expect("start");
        assert_eq!(
            registry.cancel(&handle, &user("alice")),
            CancelStatus::Cancelling
        );
        assert!(running.cancel.is_cancelled());
        registry.cancel_all();
        assert_eq!(
            registry.len(),
            1,
            "running entries stay until their stream ends"
        );
        drop(running);
        assert_eq!(
            registry.cancel("nope", &user("alice")),
            CancelStatus::NotCancellable
        );
    }
}
