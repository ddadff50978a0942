//! [`QueryRuntime`]: the threads query work runs on, apart from the runtime serving gRPC.
//!
//! DataFusion runs a plan's partitions as tasks of whichever Tokio runtime polls it. Run on the
//! runtime that also accepts connections and answers requests, a CPU-heavy query (a cross join,
//! an exact search over many rows) takes its workers, and other clients' round trips, new
//! connections and the query's own deadline wait for them. Planning and executing statements on
//! a runtime of their own (DataFusion's `thread_pools` example, InfluxDB's dedicated executor)
//! leaves the serving runtime free: it receives the result batches over a channel, answers other
//! requests meanwhile, and ends a query at its deadline even while its work is still running.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// A multi-threaded Tokio runtime for planning and executing statements.
#[derive(Debug)]
pub struct QueryRuntime {
    /// Where work is spawned.
    handle: Handle,
    /// The runtime itself, taken when it is shut down.
    runtime: Option<Runtime>,
}

impl QueryRuntime {
    /// A runtime of one worker thread per core (at least two).
    pub fn new() -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2)
            .max(2);
        let runtime = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("quiver-query")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the query threads.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work)
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // A runtime cannot be dropped from inside a task (the server may be shut down from
        // one, and the last statement to finish may hold the last reference): it is shut down
        // from a thread of its own, without waiting for work still running.
        if let Some(runtime) = self.runtime.take() {
            let _ = std::thread::Builder::new()
                .name("quiver-query-shutdown".into())
                .spawn(move || runtime.shutdown_background());
        }
    }
}
