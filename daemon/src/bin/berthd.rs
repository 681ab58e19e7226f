//! `berthd`: berth's CRI v1 runtime daemon. See `berthd --help` and the crate docs of
//! `berth_daemon`.

use clap::Parser;

use berth_daemon::config::{Config, Flags};

/// A bare level (`debug`) applies to berth's crates, the libraries underneath stay at
/// `warn`; anything else is a tracing directive list used as is.
fn log_filter(level: &str) -> String {
    if level.contains(['=', ',']) {
        return level.to_owned();
    }
    format!(
        "warn,berthd={level},berth_daemon={level},berth_service={level},berth_containerd={level}"
    )
}

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if flags.print_config {
        print!("{}", config.to_toml());
        return std::process::ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berthd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth_daemon::daemon::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "berthd failed");
            eprintln!("berthd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
