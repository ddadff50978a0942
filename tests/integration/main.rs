//! Quiver's end-to-end tests: one binary, one module per topic.

mod collections;
mod flight;
mod sql;
