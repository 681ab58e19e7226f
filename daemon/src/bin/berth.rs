//! `berth`: a small CRI client for berthd (and any CRI runtime). See `berth --help`.

fn main() -> std::process::ExitCode {
    berth_daemon::cli::main()
}
