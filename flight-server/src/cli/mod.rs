//! The `quiver sql` command line: statements run embedded or on a server, printed as tables.
//!
//! - [`sql`]: running statements and the interactive shell;
//! - [`client`]: the Flight SQL client of `quiver sql --connect`;
//! - [`progress`]: progress bars for index builds and jobs;
//! - [`vectors`]: vectors printed abbreviated.

pub mod client;
pub mod progress;
pub mod sql;
pub mod vectors;
