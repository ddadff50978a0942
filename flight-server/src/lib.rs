//! Quiver's Arrow Flight SQL service and command line.

pub mod cli;
