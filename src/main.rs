use std::process::ExitCode;

use clap::Parser;
use ticket_triage::cli::{self, Cli};

fn init_logging(verbose: u8) {
    let default = match verbose {
        // qdrant-edge warns about process-wide flags it never needs in embedded use.
        0 => "warn,qdrant_edge=error",
        1 => "info,qdrant_edge=warn",
        _ => "info,qdrant_edge=warn,ticket_triage=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.common.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
