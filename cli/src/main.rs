//! `berth`: a small CRI client for berthd (and any CRI runtime). See `berth --help`.

use std::io;
use std::process::ExitCode;

use berth_cli::CliError;
use berth_cli::args::Cli;
use clap::Parser;

/// Runs `berth` with the process's arguments. The exit code is 0 on success (also when the
/// reader of stdout went away, as with `berth logs ID | head`), 1 on any error (printed to
/// stderr as `berth: <error>`), and clap's 2 for a malformed command line; `berth exec`
/// exits with its command's code.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(berth_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        // `berth exec`: the command's own code (its low byte, as a shell reports it).
        Err(CliError::ExecExit(code)) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}
