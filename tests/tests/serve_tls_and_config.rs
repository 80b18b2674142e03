//! Specification: `doppel serve` speaks HTTPS when given a certificate and key (and
//! then refuses plain HTTP), refuses plain HTTP on a non-loopback address unless told
//! `--insecure`, reads a TOML config file whose values command-line flags override,
//! and rejects a config file with an unknown key, naming the key.

use doppel_tests::{https_client, interface, run_doppel, self_signed, Api, Node};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CLI_DEADLINE: Duration = Duration::from_secs(30);

/// `doppel serve <args>` that must fail at start-up; returns its stderr.
fn serve_fails(args: &[&str]) -> String {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let out = run_doppel(&all, &[], CLI_DEADLINE).expect("doppel serve runs");
    assert!(
        out.code.is_some_and(|c| c != 0),
        "`doppel {}` should fail; exit {:?}, stdout {}",
        all.join(" "),
        out.code,
        out.stdout
    );
    assert!(
        !out.stdout.contains(" serving "),
        "it served anyway: {}",
        out.stdout
    );
    out.stderr
}

#[tokio::test]
async fn with_a_certificate_the_api_is_https_only() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, der) = self_signed(certs.path());
    let node = Node::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .expect("node with TLS");
    assert!(node.url.starts_with("https://127.0.0.1:"), "{}", node.url);
    let api = Api::with_client(https_client(&[der]), &node.url, Some(&node.token));

    let health = api.get("/healthz").await.expect("HTTPS request");
    assert_eq!(health.expect(StatusCode::OK)["status"], "ok");
    api.upload_models(&json!([
        interface("dtmi:doppel:test:tls:A;1", json!([])),
        interface("dtmi:doppel:test:tls:B;1", json!([])),
    ]))
    .await
    .expect("upload over HTTPS");
    let page = api.get("/models?maxItemsPerPage=1").await.unwrap();
    let next = page.expect(StatusCode::OK)["nextLink"]
        .as_str()
        .expect("nextLink")
        .to_owned();
    assert!(next.starts_with("https://"), "nextLink {next}");
    let (all, pages) = api.get_all("/models?maxItemsPerPage=1").await.unwrap();
    assert_eq!((all.len(), pages), (2, 2));

    // Plain HTTP to the same port gets no API.
    let plain = node.url.replacen("https://", "http://", 1);
    match Api::new(&plain, None).get("/healthz").await {
        Err(_) => {}
        Ok(r) => assert!(
            !r.status.is_success(),
            "plain HTTP to the TLS port answered {}",
            r.status
        ),
    }
    // A client that does not trust the certificate cannot connect.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let untrusting = https_client(&[other.cert.der().clone()]);
    let refused = Api::with_client(untrusting, &node.url, None)
        .get("/healthz")
        .await
        .expect_err("a client trusting another certificate connected");
    assert!(
        matches!(
            refused.downcast_ref::<doppel_client::ClientError>(),
            Some(doppel_client::ClientError::Tls { .. })
        ),
        "refused for another reason than TLS: {refused:#}"
    );

    // The CLI talks HTTPS with --ca-cert.
    let out = run_doppel(
        &[
            "models",
            "list",
            "--url",
            &node.url,
            "--ca-cert",
            cert.to_str().unwrap(),
        ],
        &[("DOPPEL_TOKEN", &node.token)],
        CLI_DEADLINE,
    )
    .unwrap();
    assert_eq!(out.json().as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn plain_http_on_a_non_loopback_address_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stderr = serve_fails(&["--data-dir", data.to_str().unwrap(), "--http", "0.0.0.0:0"]);
    assert!(stderr.contains("--insecure"), "stderr: {stderr}");

    // --insecure allows it.
    let node = Node::start_with(&["--http", "0.0.0.0:0", "--insecure"]).expect("insecure node");
    let port = node.url.rsplit(':').next().unwrap();
    let api = Api::new(&format!("http://127.0.0.1:{port}"), Some(&node.token));
    api.get("/models").await.unwrap().expect(StatusCode::OK);

    // With TLS a non-loopback address needs no --insecure.
    let (cert, key, der) = self_signed(dir.path());
    let tls_node = Node::start_with(&[
        "--http",
        "0.0.0.0:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .expect("TLS node on 0.0.0.0");
    let port = tls_node.url.rsplit(':').next().unwrap();
    let api = Api::with_client(
        https_client(&[der]),
        &format!("https://127.0.0.1:{port}"),
        Some(&tls_node.token),
    );
    api.get("/models").await.unwrap().expect(StatusCode::OK);

    // Half a TLS configuration is refused, naming the missing half.
    let stderr = serve_fails(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
    ]);
    assert!(stderr.contains("tls_key"), "stderr: {stderr}");
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("doppel.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// PUT a twin whose body is about `size` bytes; returns the status.
async fn put_sized(api: &Api, id: &str, size: usize) -> StatusCode {
    let body =
        json!({"$metadata": {"$model": "dtmi:doppel:test:cfg:T;1"}, "note": "n".repeat(size)});
    api.put(&format!("/digitaltwins/{id}"), &body)
        .await
        .unwrap()
        .status
}

async fn with_model(node: &Node) -> Api {
    let api = node.api();
    api.upload_models(&json!([interface(
        "dtmi:doppel:test:cfg:T;1",
        json!([{"@type": "Property", "name": "note", "schema": "string"}])
    )]))
    .await
    .unwrap();
    api
}

#[tokio::test]
async fn a_config_file_sets_values_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "# doppel node settings\nmax_body_bytes = 2048\npage_size = 1\nhttp = \"127.0.0.1:0\"\n",
    );
    let config = config.to_str().unwrap();

    // From the file: 2 KiB bodies, one item per page.
    let node = Node::start_with(&["--config", config]).expect("node with config");
    let api = with_model(&node).await;
    assert_eq!(put_sized(&api, "small", 1000).await, StatusCode::OK);
    assert_eq!(
        put_sized(&api, "big", 3000).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let page = api.get("/digitaltwins").await.unwrap();
    let page: &Value = page.expect(StatusCode::OK);
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    assert!(page.get("nextLink").is_none());
    api.upload_models(&json!([interface("dtmi:doppel:test:cfg:U;1", json!([]))]))
        .await
        .unwrap();
    let first = api.get("/models").await.unwrap();
    assert_eq!(first.body["value"].as_array().unwrap().len(), 1);
    assert!(first.body["nextLink"].is_string(), "{}", first.text);

    // The flag wins over the file.
    let node = Node::start_with(&["--config", config, "--max-body-bytes", "8192"])
        .expect("node with config and flag");
    let api = with_model(&node).await;
    assert_eq!(put_sized(&api, "mid", 3000).await, StatusCode::OK);
    assert_eq!(
        put_sized(&api, "huge", 9000).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // DOPPEL_CONFIG names the file too.
    let data = dir.path().join("env-data");
    let bad = write_config(dir.path(), "max_body_bytes = 10\n");
    let out = run_doppel(
        &["serve", "--data-dir", data.to_str().unwrap()],
        &[("DOPPEL_CONFIG", bad.to_str().unwrap())],
        CLI_DEADLINE,
    )
    .unwrap();
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("max_body_bytes"),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test]
async fn a_bad_config_file_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (text, must_name) in [
        ("max_body_byte = 4096\n", "max_body_byte"),
        ("[tls]\ncert = \"c.pem\"\n", "tls"),
        ("max_body_bytes = \"big\"\n", "max_body_bytes"),
        ("max_body_bytes = 10\n", "max_body_bytes"),
        ("page_size = 0\n", "page_size"),
        ("shard_count = 0\n", "shard_count"),
        ("http = \"not an address\"\n", "http"),
    ] {
        let config = write_config(dir.path(), text);
        let stderr = serve_fails(&["--config", config.to_str().unwrap(), "--data-dir", data]);
        assert!(
            stderr.contains(must_name),
            "config {text:?}: stderr does not name '{must_name}': {stderr}"
        );
    }
    let stderr = serve_fails(&["--config", "/nonexistent/doppel.toml", "--data-dir", data]);
    assert!(
        stderr.contains("/nonexistent/doppel.toml"),
        "stderr: {stderr}"
    );
    assert!(
        !data_dir_has_db(dir.path()),
        "a refused start created a database"
    );
}

fn data_dir_has_db(root: &Path) -> bool {
    root.join("data").join("db").exists()
}
