//! The `quiver` command line.

use clap::{Parser, Subcommand};

use quiver_flight::cli;

/// Quiver: a vector collection engine on Arrow, DataFusion and Lance.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about)]
struct Args {
    /// The data root: a directory (created if missing) or an object store URL.
    #[arg(
        long,
        global = true,
        env = "QUIVER_DATA",
        default_value = "./quiver-data"
    )]
    data: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run SQL statements and print the results; without a statement, open a shell.
    Sql {
        /// The statement(s) to run, separated by ';'.
        statement: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Sql { statement } => match cli::open_session(&args.data).await {
            Ok(session) => match statement {
                Some(sql) => cli::run_and_print(&session, &sql).await,
                None => cli::shell(&session).await,
            },
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR: {}", quiver_planner::user_message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
