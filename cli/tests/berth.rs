//! The `berth` binary without a runtime: its verbs, where it looks for the socket, and its
//! exit codes (0 success, 1 an error printed as `berth: …`, 2 a malformed command line).

use std::process::{Command, Output};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn berth(args: &[&str], socket_env: Option<&str>) -> Output {
    let mut cmd = Command::new(BERTH);
    cmd.args(args).env_remove("BERTH_SOCKET");
    if let Some(s) = socket_env {
        cmd.env("BERTH_SOCKET", s);
    }
    cmd.output().expect("run berth")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_verb_and_the_default_socket() {
    let o = berth(&["--help"], None);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for verb in [
        "version", "info", "runp", "stopp", "rmp", "pods", "inspectp", "create", "start", "stop",
        "rm", "ps", "inspect", "logs", "exec",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "{verb} missing from:\n{help}"
        );
    }
    assert!(help.contains("/run/berth/berth.sock"), "{help}");
    assert!(help.contains("BERTH_SOCKET"), "{help}");
    let o = berth(&["--version"], None);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unreachable_socket_is_exit_code_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("env.sock");
    let from_flag = dir.path().join("flag.sock");
    let o = berth(&["version"], from_env.to_str());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!(
            "berth: connect to the CRI socket {}: ",
            from_env.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    // --socket wins over $BERTH_SOCKET, also after the verb (the option is global).
    let o = berth(
        &["ps", "-a", "--socket", from_flag.to_str().unwrap()],
        from_env.to_str(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&from_flag.display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_malformed_command_line_is_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let sock = sock.to_str();
    for args in [
        &["stop"][..],
        &["frobnicate"],
        &["--request-timeout", "5x", "version"],
        &["--output", "yaml", "version"],
        &["runp", "--label", "novalue"],
        &["runp", "--name", "p", "--pid", "sideways"],
        &["pods", "--state", "running"],
        &["ps", "--state", "paused"],
    ] {
        let o = berth(args, sock);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}
