//! The `doppel` client subcommands, run as a user would run them, without a server:
//! offline `models check`, argument errors, and the exit codes and messages for a
//! server that cannot be reached or trusted (0 ok, 1 rejected/invalid, 2 usage or
//! connection problems).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// Run `doppel <args>` in `dir`, isolated from the caller's DOPPEL_* settings.
fn doppel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_doppel"))
        .args(args)
        .current_dir(dir)
        .env_remove("DOPPEL_URL")
        .env_remove("DOPPEL_TOKEN")
        .env_remove("DOPPEL_CA_CERT")
        .output()
        .expect("run doppel")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback URL nothing listens on (the port was free a moment ago).
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn models_check_accepts_valid_files_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("room.json");
    std::fs::write(
        &file,
        r#"{"@id": "dtmi:com:example:Room;1", "@type": "Interface",
            "@context": "dtmi:dtdl:context;3",
            "contents": [{"@type": "Property", "name": "temp", "schema": "double"}]}"#,
    )
    .expect("write");
    // An https URL without --ca-cert would fail any online command; check ignores it.
    let out = doppel(
        dir.path(),
        &[
            "models",
            "check",
            "room.json",
            "--url",
            "https://example.invalid",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "ok: 1 interfaces (dtmi:com:example:Room;1)"
    );
}

#[test]
fn models_check_rejects_invalid_files_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.json"), "{ not json").expect("write");
    let out = doppel(dir.path(), &["models", "check", "bad.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bad.json"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_server_exits_2_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = closed_port_url();
    let out = doppel(dir.path(), &["twins", "get", "t1", "--url", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach {url}")),
        "stderr: {err}"
    );
    assert!(err.contains("doppel serve"), "stderr: {err}");
}

#[test]
fn https_without_a_ca_cert_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = doppel(
        dir.path(),
        &["tokens", "list", "--url", "https://127.0.0.1:8443"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--ca-cert"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn twins_put_without_model_or_body_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = closed_port_url();
    let out = doppel(dir.path(), &["twins", "put", "t1", "--url", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--model"), "stderr: {}", stderr(&out));
}

#[test]
fn unknown_token_roles_are_refused_by_the_parser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = doppel(
        dir.path(),
        &["tokens", "create", "--name", "x", "--role", "root"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("reader"), "stderr: {}", stderr(&out));
}
