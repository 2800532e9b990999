//! Cold starts of the three Lambda functions, measured on this machine: each release
//! binary is started, again and again, against a minimal Lambda Runtime API served in
//! this process on 127.0.0.1, the way Lambda starts a `provided.al2023` function. Run it
//! with
//!
//! ```text
//! cargo bench -p sextant-tests --bench cold_start
//! ```
//!
//! It first builds the functions with `cargo build --release` for this machine (x86_64:
//! the arm64 binaries Lambda runs cannot run here) and times that build, then, for each
//! function and each of `RUNS` starts, measures
//!
//! - init: from spawning the process to its first `GET /runtime/invocation/next`, which
//!   is when Lambda counts a function as ready (its `Init Duration`);
//! - first event: from answering that request with an event to the function posting
//!   its response (or error), the first invocation's duration.
//!
//! api answers an API Gateway HTTP API (v2) `GET /healthz`; ingest a `POST
//! /v1/auth/token` without a credential (401); neither touches storage. metering's only
//! event is the hourly schedule, which rolls up hours in DynamoDB: here the endpoint is a
//! closed loopback port and the SDK makes one attempt (`AWS_MAX_ATTEMPTS=1`), so it
//! answers with an error, and its figure is how fast it fails. Nothing leaves the
//! machine: the Runtime API, the storage endpoint and every credential are local fakes.
//!
//! The arm64 zips are reported when `scripts/build-lambda.sh` has left them in
//! `target/lambda/<function>/bootstrap.zip`. Goals (issue 8): every zip under 8 MB,
//! init under 30 ms.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, watch};

/// Starts per function.
const RUNS: usize = 20;
/// Longest a start may take to reach `next`, or an event to be answered.
const PATIENCE: Duration = Duration::from_secs(20);
const FUNCTIONS: [&str; 3] = ["sextant-api", "sextant-ingest", "sextant-metering"];
const ZIP_GOAL_BYTES: u64 = 8 * 1000 * 1000;
const INIT_GOAL: Duration = Duration::from_millis(30);
/// `kid:base64` of 32 bytes (0, 1, ..., 31): a well-formed signing key, for starting only.
const JWT_KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:sextant-cold-start";
const TRACE_ID: &str = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the tests crate")
        .to_owned();
    let skip_build = std::env::args().any(|arg| arg == "--no-build");
    if !skip_build {
        build(&root);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for function in FUNCTIONS {
        let binary = root.join("target/release").join(function);
        assert!(
            binary.is_file(),
            "{} is missing: build it (run without --no-build)",
            binary.display()
        );
        let starts: Vec<Start> = (0..RUNS)
            .map(|_| runtime.block_on(start_once(function, &binary)))
            .collect();
        rows.push(Row::new(function, &binary, &root, starts));
    }
    print_table(&rows);
}

/// `cargo build --release` of the three functions for this machine, timed.
fn build(root: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut command = Command::new(cargo);
    command.current_dir(root).args(["build", "--release"]);
    for function in FUNCTIONS {
        command.args(["-p", function]);
    }
    let status = command.status().expect("cargo runs for the release build");
    assert!(status.success(), "the release build failed: {status}");
    println!(
        "release build for this machine ({}): {:.1} s; arm64 binaries cannot run here, \
         so the figures below are for the native build",
        std::env::consts::ARCH,
        started.elapsed().as_secs_f64()
    );
}

/// What one start of a function did.
#[derive(Debug)]
struct Start {
    init: Duration,
    first_event: Duration,
    /// The status code of an HTTP response, or `error: <type>` for a reported error.
    answer: String,
}

/// A child process that is killed (and reaped) however the measurement ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_once(function: &str, binary: &Path) -> Start {
    let api = RuntimeApi::start(event_for(function)).await;
    let closed = closed_port().await;
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "/aws/lambda/sextant-cold-start",
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
            ("_HANDLER", "bootstrap"),
            ("TZ", ":UTC"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_MAX_ATTEMPTS", "1"),
            ("SEXTANT_TABLE", "sextant-cold-start"),
            ("SEXTANT_BUCKET", "sextant-cold-start"),
            ("SEXTANT_JWT_KEYS", JWT_KEYS),
            ("RUST_LOG", "info"),
        ])
        .env(
            "SEXTANT_AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{closed}"),
        )
        .stdin(Stdio::null());
    // One file description for both streams, so neither overwrites the other.
    let output = log.reopen().expect("the log file");
    command
        .stderr(output.try_clone().expect("the log file"))
        .stdout(output);
    let mut seen = api.seen;
    let started = Instant::now();
    let mut child = Running(command.spawn().expect("the function starts"));

    let first = wait_for(&mut seen, &mut child, &log, function, "its first `next`").await;
    let ready = match first {
        Seen::Next(at) => at,
        Seen::InitError(body) => fail(
            function,
            &log,
            &format!("reported an init error: {}", String::from_utf8_lossy(&body)),
        ),
        other => fail(
            function,
            &log,
            &format!("sent {other:?} before asking for an event"),
        ),
    };
    let (done, answer) = match wait_for(&mut seen, &mut child, &log, function, "an answer").await {
        Seen::Response(at, body) => (at, response_status(&body)),
        Seen::Error(at, body) => (at, format!("error: {}", error_message(&body))),
        Seen::InitError(body) => fail(
            function,
            &log,
            &format!("reported an init error: {}", String::from_utf8_lossy(&body)),
        ),
        Seen::Next(_) => fail(function, &log, "asked for another event before answering"),
    };
    drop(child);
    let _ = api.stop.send(true);
    api.server.abort();
    Start {
        init: ready - started,
        first_event: done - ready,
        answer,
    }
}

/// The next thing the function did, or a failure when it exited or took too long.
async fn wait_for(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    child: &mut Running,
    log: &tempfile::NamedTempFile,
    function: &str,
    what: &str,
) -> Seen {
    let deadline = Instant::now() + PATIENCE;
    loop {
        tokio::select! {
            event = seen.recv() => return event.expect("the runtime API runs"),
            () = tokio::time::sleep(Duration::from_millis(5)) => {
                if let Ok(Some(status)) = child.0.try_wait() {
                    fail(function, log, &format!("exited ({status}) before {what}"));
                }
                if Instant::now() > deadline {
                    fail(function, log, &format!("did not reach {what} in {PATIENCE:?}"));
                }
            }
        }
    }
}

fn fail(function: &str, log: &tempfile::NamedTempFile, what: &str) -> ! {
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    panic!("{function} {what}; its output:\n{output}");
}

/// A loopback port nothing listens on: the storage endpoint, so any AWS call fails at
/// once instead of leaving the machine.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding loopback");
    listener.local_addr().expect("an address").port()
}

/// The event each function is handed.
fn event_for(function: &str) -> serde_json::Value {
    match function {
        "sextant-api" => http_api_event("GET", "/healthz"),
        "sextant-ingest" => http_api_event("POST", "/v1/auth/token"),
        _ => serde_json::json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": "123456789012",
            "time": "2026-11-05T13:02:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/hourly"],
            "detail": {},
        }),
    }
}

/// An API Gateway HTTP API payload (format 2.0) for a request without a body or a
/// credential.
fn http_api_event(method: &str, path: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            "content-length": "0",
            "host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "user-agent": "cold-start",
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "cold-start",
            },
            "requestId": "cold-start",
            "routeKey": "$default",
            "stage": "$default",
            "time": "05/Nov/2026:13:02:00 +0000",
            "timeEpoch": 1_793_970_120_000_u64,
        },
        "isBase64Encoded": false,
    })
}

fn response_status(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|response| response["statusCode"].as_u64())
        .map_or_else(|| "a response".to_owned(), |status| status.to_string())
}

/// The message of an error the runtime reported (`{"errorType", "errorMessage"}`).
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|error| error["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What the function asked of the Runtime API, and when.
#[derive(Debug)]
enum Seen {
    Next(Instant),
    Response(Instant, Bytes),
    Error(Instant, Bytes),
    /// The function could not start; the body is its diagnostic.
    InitError(Bytes),
}

/// The part of the Lambda Runtime API a function uses
/// (`/2018-06-01/runtime/...`): the first `next` is answered with one event, later
/// ones wait until the measurement stops; responses and errors are recorded.
struct RuntimeApi {
    address: String,
    seen: mpsc::UnboundedReceiver<Seen>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ApiState {
    event: Bytes,
    served: Arc<Mutex<bool>>,
    seen: mpsc::UnboundedSender<Seen>,
    stop: watch::Receiver<bool>,
}

impl RuntimeApi {
    async fn start(event: serde_json::Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding loopback");
        let address = listener.local_addr().expect("an address").to_string();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let state = ApiState {
            event: Bytes::from(serde_json::to_vec(&event).expect("an event")),
            served: Arc::default(),
            seen: seen_tx,
            stop: stop_rx,
        };
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            address,
            seen,
            stop,
            server,
        }
    }
}

async fn next(State(state): State<ApiState>) -> Response {
    let at = Instant::now();
    let first = !std::mem::replace(
        &mut *state.served.lock().unwrap_or_else(|e| e.into_inner()),
        true,
    );
    if !first {
        // Lambda freezes the function here until the next event; this harness stops it.
        let mut stop = state.stop.clone();
        let _ = stop.wait_for(|stopped| *stopped).await;
        return StatusCode::GONE.into_response();
    }
    let _ = state.seen.send(Seen::Next(at));
    let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json".to_owned()),
        ("lambda-runtime-aws-request-id", REQUEST_ID.to_owned()),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            FUNCTION_ARN.to_owned(),
        ),
        ("lambda-runtime-trace-id", TRACE_ID.to_owned()),
    ] {
        headers.insert(
            name,
            HeaderValue::from_str(&value).expect("an ASCII header value"),
        );
    }
    (headers, state.event.clone()).into_response()
}

async fn invocation_response(State(state): State<ApiState>, body: Bytes) -> StatusCode {
    let _ = state.seen.send(Seen::Response(Instant::now(), body));
    StatusCode::ACCEPTED
}

async fn invocation_error(State(state): State<ApiState>, body: Bytes) -> StatusCode {
    let _ = state.seen.send(Seen::Error(Instant::now(), body));
    StatusCode::ACCEPTED
}

async fn init_error(State(state): State<ApiState>, body: Bytes) -> StatusCode {
    let _ = state.seen.send(Seen::InitError(body));
    StatusCode::ACCEPTED
}

/// One line of the table.
struct Row {
    function: &'static str,
    binary_bytes: u64,
    zip_bytes: Option<u64>,
    init: Vec<Duration>,
    first_event: Vec<Duration>,
    answers: Vec<String>,
}

impl Row {
    fn new(function: &'static str, binary: &Path, root: &Path, starts: Vec<Start>) -> Self {
        let zip: PathBuf = root
            .join("target/lambda")
            .join(function)
            .join("bootstrap.zip");
        let mut init: Vec<Duration> = starts.iter().map(|start| start.init).collect();
        let mut first_event: Vec<Duration> = starts.iter().map(|start| start.first_event).collect();
        init.sort();
        first_event.sort();
        let mut answers: Vec<String> = starts.into_iter().map(|start| start.answer).collect();
        answers.sort();
        answers.dedup();
        Self {
            function,
            binary_bytes: std::fs::metadata(binary).map_or(0, |m| m.len()),
            zip_bytes: std::fs::metadata(zip).ok().map(|m| m.len()),
            init,
            first_event,
            answers,
        }
    }
}

/// The nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "cold starts on this machine ({} x {}, {RUNS} starts each; init = spawn to first \
         `next`, event = `next` answered to result posted)",
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!(
        "{:<17} {:>9} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10}  first event answered",
        "function",
        "binary MB",
        "arm64 zip MB",
        "init p50",
        "init p90",
        "init max",
        "event p50",
        "event max",
    );
    for row in rows {
        println!(
            "{:<17} {:>9} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10}  {}",
            row.function,
            mb(row.binary_bytes),
            row.zip_bytes.map_or_else(|| "not built".to_owned(), mb),
            ms(percentile(&row.init, 50)),
            ms(percentile(&row.init, 90)),
            ms(percentile(&row.init, 100)),
            ms(percentile(&row.first_event, 50)),
            ms(percentile(&row.first_event, 100)),
            row.answers.join(" | "),
        );
    }
    println!("(times in ms; binary = x86_64 release build; zip = scripts/build-lambda.sh)");
    for row in rows {
        let init = percentile(&row.init, 50);
        let zip = match row.zip_bytes {
            Some(bytes) if bytes < ZIP_GOAL_BYTES => "zip under 8 MB",
            Some(_) => "ZIP OVER 8 MB",
            None => "zip not built",
        };
        let init = if init < INIT_GOAL {
            "init p50 under 30 ms"
        } else {
            "INIT P50 OVER 30 ms"
        };
        println!("{:<17} {zip}, {init}", row.function);
    }
}
