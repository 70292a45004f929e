use std::process::ExitCode;

use ticket_triage::cli;

fn init_logging(verbose: u8) {
    let default = match verbose {
        // qdrant-edge warns about process-wide flags it never needs in embedded use.
        // `Feature flags not initialized!` is about process-wide flags an embedded store never needs: nothing a user can act on.
        0 => "warn,qdrant_edge=error",
        1 => "info,qdrant_edge=warn,qdrant_edge::common::flags=error",
        _ => "info,qdrant_edge=warn,qdrant_edge::common::flags=error,ticket_triage=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: logs piped to a file or a test stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

fn main() -> ExitCode {
    let cli = cli::parse();
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
        // The reader went away (`triage ... | head -1`): nothing more to say to anyone.
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is a write to a closed pipe.
fn stdout_closed(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()) == Some(BrokenPipe)
            // Store errors carry I/O errors as text (`triage export` to a closed pipe).
            || c.to_string().contains("Broken pipe (os error 32)")
    })
}
