//! Headless Chromium driven over WebDriver: Debian's `chromium` and its `chromedriver`,
//! both on loopback, for the page walk-throughs (`cli/tests/browser.rs`) and the
//! benches that measure the pages in a real browser.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// How long chromedriver and a new browser may take to be ready.
const START: Duration = Duration::from_secs(30);

/// The path of a tool, from the environment variable `variable` or its Debian location.
pub fn tool(variable: &str, default: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(std::env::var_os(variable).unwrap_or_else(|| default.into()));
    ensure!(
        path.exists(),
        "{} is missing: install Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver), or set {variable}",
        path.display()
    );
    Ok(path)
}

/// `chromedriver` on a free loopback port, killed with every browser it started when
/// dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl ChromeDriver {
    pub async fn start(binary: &Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("a free loopback port")?
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that dropping it also ends the browsers.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = tokio::time::Instant::now() + START;
        loop {
            let status = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Ok(driver);
            }
            if let Some(status) = driver.child.try_wait()? {
                bail!("chromedriver exited before it was ready: {status}");
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "chromedriver was not ready within {START:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new headless browser of its own (a fresh profile: no cookie, no cache), its
    /// window `width` by `height`, waiting at most `timeout` for a page or a script.
    pub async fn session(
        &self,
        chromium: &Path,
        (width, height): (u32, u32),
        timeout: Duration,
    ) -> anyhow::Result<Client> {
        let timeout = timeout.as_millis() as u64;
        let capabilities = json!({
            "browserName": "chrome",
            "timeouts": {"pageLoad": timeout, "script": timeout},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    format!("--window-size={width},{height}"),
                    "--disable-dev-shm-usage",
                    // Nothing but loopback: no background calls, and no name resolves
                    // to anything else.
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            START,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&self.url),
        )
        .await
        .context("Chromium did not start in time")?
        .context("a WebDriver session in Chromium")?;
        Ok(client)
    }

    /// Sends a DevTools command to the browser of `client` through chromedriver (what
    /// WebDriver has no command for: clearing the cache, a script for every new
    /// document) and answers its result.
    pub async fn devtools(
        &self,
        client: &Client,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let session = client
            .session_id()
            .await?
            .context("the browser has no WebDriver session")?;
        let response = self
            .http
            .post(format!("{}/session/{session}/goog/cdp/execute", self.url))
            .json(&json!({"cmd": method, "params": params}))
            .send()
            .await
            .with_context(|| format!("sending {method} to chromedriver"))?;
        let status = response.status();
        let body: Value = response.json().await.context("chromedriver's answer")?;
        ensure!(status.is_success(), "{method}: {status} {body}");
        Ok(body["value"].clone())
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browsers it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
