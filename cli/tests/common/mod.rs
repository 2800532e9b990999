//! Starting the real `sextant` binary for tests, and talking to it.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Every log line the server wrote so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free loopback port and waits for the line naming its URL.
pub fn start(data_dir: &Path) -> Server {
    start_with_env(data_dir, &[])
}

/// `start`, with environment variables for the server (a price plan, an operator).
pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sextant serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("sextant serve exited before serving")
            .expect("reading its log");
        if let Some(url) = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("url=http://"))
        {
            break format!("http://{}", url.trim_end_matches('/'));
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    let log = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().expect("log lock").push(line);
        }
    });
    Server { child, base, log }
}

pub fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("sending SIGTERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().expect("waiting for the server") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn post(
    client: &reqwest::Client,
    url: String,
    credential: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Signs up a team named after the project and creates the project with one run;
/// answers the team's API key and the run's id.
pub async fn team_with_run(server: &Server, project: &str) -> (String, String) {
    let client = reqwest::Client::new();
    // Each test has a server of its own: the project names the team apart in it.
    let (status, team) = post(
        &client,
        format!("{}/v1/signup", server.base),
        None,
        serde_json::json!({
            "team": project,
            "email": format!("{project}@example.com"),
            "password": "a long enough password",
        }),
    )
    .await;
    assert_eq!(status, 201, "{team}");
    let api_key = team["api_key"].as_str().unwrap().to_owned();
    let (status, body) = post(
        &client,
        format!("{}/v1/projects", server.base),
        Some(&api_key),
        serde_json::json!({"name": project}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = post(
        &client,
        format!("{}/v1/projects/{project}/runs", server.base),
        Some(&api_key),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    (api_key, run["id"].as_str().unwrap().to_owned())
}
