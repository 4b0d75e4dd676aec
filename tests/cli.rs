//! The real binary: command line, configuration layering and errors, fal key sources, logs
//! free of secrets, and draining on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fal-proxy");

/// The binary with a clean environment (no FAL_* or FAL_PROXY_* from the developer's shell).
fn bin() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("FAL_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1");
    // Keep the store out of the working tree.
    c.env("FAL_PROXY_STORE__BACKEND", "memory");
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn help_documents_commands_and_environment() {
    let (ok, out, _) = run(bin().arg("--help"));
    assert!(ok);
    for needle in [
        "serve",
        "check-config",
        "keygen",
        "mock-fal",
        "--mock",
        "--config",
        "FAL_KEY",
        "FAL_PROXY_",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}: {out}");
    }
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let tmp = common::temp_dir("check");
    let dir = tmp.path();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        "[auth]\nanonymous = false\n[[auth.api_keys]]\nid = \"web\"\nkey_sha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(bin()
        .args(["check-config", "--config"])
        .arg(&file)
        .env("FAL_PROXY_FAL__QUEUE_URL", "http://127.0.0.1:9000/queue")
        .env("FAL_KEY", "fal-secret-value-123"));
    assert!(ok, "{err}");
    assert!(
        out.contains("queue_url = \"http://127.0.0.1:9000/queue\""),
        "{out}"
    );
    assert!(out.contains("key_sha256 = \"*****\""), "{out}");
    assert!(!out.contains("aaaaaaaaaaaaaaaa"));
    assert!(!out.contains("fal-secret-value-123") && !err.contains("fal-secret-value-123"));
    assert!(out.contains("fal key: set"));
    // The embedded defaults alone are valid too.
    let (ok, _, err) = run(bin().arg("check-config"));
    assert!(ok, "{err}");
}

#[test]
fn config_errors_name_the_key_or_file_and_exit_non_zero() {
    let tmp = common::temp_dir("errors");
    let dir = tmp.path();
    let cases: &[(&str, &str)] = &[
        ("listn = \"127.0.0.1:1\"\n", "listn"),
        ("listen = \"not an address\"\n", "listen"),
        ("[fal]\nqueue_url = \"ftp://x\"\n", "fal.queue_url"),
        ("[server]\nmax_body_bytes = \"big\"\n", "max_body_bytes"),
        (
            "[cors]\nallowed_origins = [\"example.com\"]\n",
            "cors.allowed_origins[0]",
        ),
        (
            "[fal]\nallowed_webhook_urls = [\"http://x.com/\"]\n",
            "fal.allowed_webhook_urls[0]",
        ),
        (
            "[[endpoints]]\nid = \"fal-ai/x\"\nschema = \"nope/missing.json\"\n",
            "nope/missing.json",
        ),
        (
            "[[endpoints]]\nid = \"bad\"\nschema = \"schemas/nano-banana-pro.json\"\n",
            "endpoints[0].id",
        ),
        (
            "[auth]\nanonymous = false\n[[auth.api_keys]]\nid = \"a\"\nkey_sha256 = \"short\"\n",
            "auth.api_keys[0].key_sha256",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let file = dir.join(format!("c{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let (ok, _, err) = run(bin().args(["check-config", "--config"]).arg(&file));
        assert!(!ok, "accepted: {text}");
        assert!(
            err.contains(needle),
            "error for {text:?} does not name {needle}: {err}"
        );
    }
    let (ok, _, err) = run(bin().args(["check-config", "--config", "/nonexistent/x.toml"]));
    assert!(!ok && err.contains("/nonexistent/x.toml"), "{err}");
    // Unknown environment overrides are unknown keys too.
    let (ok, _, err) = run(bin().arg("check-config").env("FAL_PROXY_LISTN", "x"));
    assert!(!ok && err.contains("listn"), "{err}");
    // A schema file that is not a fal OpenAPI document for the endpoint.
    let schema = dir.join("empty.json");
    std::fs::write(&schema, "{}").unwrap();
    let file = dir.join("schema.toml");
    std::fs::write(
        &file,
        format!(
            "[[endpoints]]\nid = \"fal-ai/nano-banana-pro\"\nschema = \"{}\"\n",
            schema.display()
        ),
    )
    .unwrap();
    let (ok, _, err) = run(bin().args(["check-config", "--config"]).arg(&file));
    assert!(!ok && err.contains("fal-ai/nano-banana-pro"), "{err}");
}

#[test]
fn keygen_prints_a_key_and_its_config_entry() {
    let (ok, out, _) = run(bin().args(["keygen", "--id", "web-app"]));
    assert!(ok);
    let key = out
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("fpk_"))
        .map(|k| format!("fpk_{k}"))
        .unwrap();
    let hash = out
        .lines()
        .find_map(|l| l.strip_prefix("key_sha256 = \""))
        .unwrap()
        .trim_end_matches('"');
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(key.as_bytes())), hash);
    assert!(out.contains("id = \"web-app\""));
}

#[test]
fn without_a_fal_key_the_proxy_refuses_to_start_except_in_mock_mode() {
    let (ok, _, err) = run(bin().env("FAL_PROXY_LISTEN", "127.0.0.1:0"));
    assert!(!ok);
    assert!(err.contains("FAL_KEY"), "{err}");
    let (ok, _, err) = run(bin()
        .env("FAL_PROXY_LISTEN", "127.0.0.1:0")
        .env("FAL_KEY_ID", "only-id"));
    assert!(!ok && err.contains("FAL_KEY_SECRET"), "{err}");
    let tmp = common::temp_dir("keyfile");
    let dir = tmp.path();
    let (ok, _, err) = run(bin()
        .env("FAL_PROXY_LISTEN", "127.0.0.1:0")
        .env("FAL_PROXY_FAL__KEY_FILE", dir.join("missing")));
    assert!(!ok && err.contains("key_file"), "{err}");
}

/// A running binary whose JSON log lines are collected on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .arg("--log-json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 20 s) for a line containing `needle` and returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?}; saw: {:#?}", self.seen);
    }

    fn addr(&mut self) -> String {
        let line = self.wait_for("fal-proxy listening");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["addr"].as_str().unwrap().to_owned()
    }

    fn terminate(mut self) -> (bool, Vec<String>) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let mut waited = 0;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            waited += 1;
            assert!(waited < 300, "did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_millis(100));
        self.seen.extend(self.lines.try_iter());
        (status.success(), self.seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_one_line_per_request_and_never_a_secret_and_sigterm_drains() {
    let fal_key = "fal-key-id-7:fal-key-secret-never-log-me";
    // The fake fal, as its own process.
    let mut fake = Running::start(
        bin()
            .args(["mock-fal", "--listen", "127.0.0.1:0"])
            .env("FAL_PROXY_MOCK__PROGRESS_SECONDS", "1.5"),
    );
    let queue = fake.wait_for("FAL_PROXY_FAL__QUEUE_URL=");
    let base = queue
        .trim_start_matches("FAL_PROXY_FAL__QUEUE_URL=")
        .trim_end_matches("/queue")
        .to_owned();
    let (client_key, hash) = fal_proxy::auth::generate_key();
    let tmp = common::temp_dir("logs");
    let dir = tmp.path();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:0\"\n[auth]\nanonymous = false\n[[auth.api_keys]]\nid = \"web\"\nkey_sha256 = \"{hash}\"\n"),
    )
    .unwrap();
    let mut proxy = Running::start(
        bin()
            .arg("--config")
            .arg(&file)
            .env("FAL_KEY_ID", "fal-key-id-7")
            .env("FAL_KEY_SECRET", "fal-key-secret-never-log-me")
            .env("FAL_PROXY_FAL__QUEUE_URL", format!("{base}/queue"))
            .env("FAL_PROXY_FAL__RUN_URL", format!("{base}/run"))
            .env("FAL_PROXY_FAL__REST_URL", format!("{base}/rest")),
    );
    let url = format!("http://{}", proxy.addr());
    let client = common::http();
    let submit = client
        .post(format!("{url}/queue/{}", common::EDIT))
        .bearer_auth(&client_key)
        .json(&common::edit_input())
        .send()
        .await
        .unwrap();
    assert_eq!(submit.status(), 200);
    let wrong = client
        .post(format!("{url}/queue/{}", common::EDIT))
        .header("authorization", "Bearer not-a-real-key-but-still-secret")
        .json(&common::edit_input())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let line = proxy.wait_for("\"route\":\"submit\"");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["endpoint"], common::EDIT);
    assert_eq!(v["status"], 200);
    assert_eq!(v["client"], "web");
    assert!(v["fal_request_id"].as_str().is_some_and(|s| s.len() > 8));
    assert!(v["latency_ms"].is_number());

    // A sync run is in flight (the fake takes about 1.5 s) when SIGTERM arrives: it completes.
    let run = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        let key = client_key.clone();
        async move {
            client
                .post(format!("{url}/run/fal-ai/nano-banana-pro"))
                .bearer_auth(key)
                .json(&serde_json::json!({"prompt": "a quiet harbour"}))
                .send()
                .await
        }
    });
    // Give the run a moment to reach fal, then stop the proxy while it is in flight.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (ok, lines) = tokio::task::spawn_blocking(move || proxy.terminate())
        .await
        .unwrap();
    let response = run.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "the in-flight run was cut off");
    assert!(ok, "exit status after SIGTERM was not 0");
    let (_, fake_lines) = fake.terminate();
    for line in lines.iter().chain(&fake_lines) {
        for secret in [
            fal_key,
            "fal-key-secret-never-log-me",
            client_key.as_str(),
            &hash,
            "not-a-real-key-but-still-secret",
        ] {
            assert!(!line.contains(secret), "a secret was logged: {line}");
        }
    }
}

#[test]
fn a_corrupt_or_unwritable_data_file_is_a_clear_start_up_error() {
    let tmp = common::temp_dir("corrupt");
    let dir = tmp.path();
    std::fs::write(dir.join("fal-proxy.db"), vec![0x5a; 8192]).unwrap();
    let (ok, _, err) = run(bin()
        .args(["--mock"])
        .env("FAL_PROXY_LISTEN", "127.0.0.1:0")
        .env("FAL_PROXY_STORE__BACKEND", "sqlite")
        .env("FAL_PROXY_STORE__DATA_DIR", dir));
    assert!(!ok);
    assert!(err.contains("fal-proxy.db"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A data_dir that is a regular file cannot hold the database.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (ok, _, err) = run(bin()
        .args(["--mock"])
        .env("FAL_PROXY_LISTEN", "127.0.0.1:0")
        .env("FAL_PROXY_STORE__BACKEND", "sqlite")
        .env("FAL_PROXY_STORE__DATA_DIR", &file));
    assert!(!ok);
    assert!(err.contains("not-a-dir"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
