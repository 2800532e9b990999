//! Helpers for tests over Sextant's real HTTP surface: start the real application on
//! a free loopback port with fresh storage, sign up random teams, send requests.

pub mod capacity;
pub mod chromium;
pub mod faults;
pub mod series_bench;
pub mod workload;

use std::sync::Arc;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sextant_cli::{Application, Backend, ServeConfig};
use sextant_domain::billing::PricePlan;
use sextant_storage_aws::AwsStorageConfig;
use sextant_storage_aws::DynamoKv;
use sextant_storage_aws::S3Blobs;
use sextant_storage_local::{LocalBlobs, UrlSigner};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The emulator endpoint `scripts/test.sh` starts (moto's server mode on loopback).
pub fn aws_endpoint() -> String {
    std::env::var("SEXTANT_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "SEXTANT_TEST_AWS_ENDPOINT is not set: the AWS adapter tests need moto's server. \
             Run them with scripts/test.sh, which starts it."
        )
    })
}

/// A name no other test uses: tables, buckets, e-mails.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    )
}

/// A fresh table and bucket on the emulator, created for one test.
pub async fn fresh_aws_storage() -> (AwsStorageConfig, DynamoKv, S3Blobs) {
    // Credentials and region come from the environment scripts/test.sh sets (dummy
    // values moto accepts); the endpoint keeps every request on loopback.
    let config = AwsStorageConfig {
        table: unique("sextant"),
        bucket: unique("sextant"),
        endpoint_url: Some(aws_endpoint()),
    };
    let (kv, blobs) = config.connect().await;
    kv.create_table().await.expect("creating the test table");
    blobs
        .create_bucket()
        .await
        .expect("creating the test bucket");
    (config, kv, blobs)
}

/// A local blob store whose presigned URLs are served on a loopback port of its own,
/// and the directory that holds it.
pub async fn local_blobs_with_routes() -> (Arc<LocalBlobs>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding loopback");
    let base: url::Url = format!("http://{}", listener.local_addr().expect("address"))
        .parse()
        .expect("base URL");
    let blobs = Arc::new(
        LocalBlobs::open(&dir.path().join("blobs"), UrlSigner::new(&[7; 32]), base)
            .expect("opening the blob directory"),
    );
    let router = sextant_cli::blob_routes::routes(Arc::clone(&blobs));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (blobs, dir)
}

/// The real application, serving on 127.0.0.1 on a port of its own until dropped.
/// Enough of a PNG for the server to accept it as one.
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not really a picture";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp").field("base", &self.base).finish()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl TestApp {
    /// On the embedded store and a local blob directory, as `sextant serve` runs.
    pub async fn spawn() -> Self {
        Self::spawn_with(Backend::Embedded).await
    }

    /// On DynamoDB and S3 as emulated by moto, as a deployment runs.
    pub async fn spawn_on_aws() -> Self {
        let (config, _, _) = fresh_aws_storage().await;
        Self::spawn_with(Backend::Aws(config)).await
    }

    pub async fn spawn_with(backend: Backend) -> Self {
        Self::spawn_adjusted(backend, |_| {}).await
    }

    /// With a heartbeat timeout of the test's choosing, to see runs go lost.
    pub async fn spawn_configured(backend: Backend, heartbeat_timeout: time::Duration) -> Self {
        Self::spawn_adjusted(backend, |config| {
            config.heartbeat_timeout = heartbeat_timeout
        })
        .await
    }

    /// With the defaults `sextant serve` has, adjusted by `adjust` (a price plan, an
    /// operator token).
    pub async fn spawn_adjusted(backend: Backend, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        sextant_domain::telemetry::init();
        let data_dir = Arc::new(tempfile::tempdir().expect("temporary data directory"));
        let mut config = ServeConfig {
            addr: "127.0.0.1:0".parse().expect("loopback address"),
            data_dir: data_dir.path().to_owned(),
            backend,
            replicas: None,
            heartbeat_timeout: time::Duration::minutes(10),
            access_token_ttl: sextant_edge::state::Settings::new(None).access_token_ttl,
            job_lease: time::Duration::minutes(1),
            plan: PricePlan::default(),
            operator_token: None,
            rate_limits: sextant_edge::rate_limit::RateLimits::default(),
            report_webhook: None,
        };
        adjust(&mut config);
        let app = Application::build(config)
            .await
            .expect("building the application");
        let base = app.base_url().as_str().trim_end_matches('/').to_owned();
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            data_dir,
            shutdown: Some(shutdown),
        }
    }

    /// Serves `state` (on a clock of the test's choosing, say) with the routes
    /// `sextant serve` mounts, until the test ends, its public URL where it listens and
    /// its mail going to an outbox in a data directory of its own, as `spawn`'s does.
    /// Answers the app and the state as served, for the test's metering runs.
    pub async fn serving(
        mut state: sextant_edge::state::AppState,
    ) -> (Self, sextant_edge::state::AppState) {
        let data_dir = Arc::new(tempfile::tempdir().expect("temporary data directory"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding loopback");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let mut settings = (*state.settings).clone();
        settings.public_url = Some(base.parse().expect("a URL"));
        state.settings = Arc::new(settings);
        let outbox = sextant_storage_local::OutboxMailer::new(
            data_dir.path().join("outbox"),
            "Sextant <sextant@localhost>",
        );
        let state = state.with_mailer(Arc::new(outbox));
        serve_on(listener, state.clone());
        let app = Self {
            base,
            client: reqwest::Client::new(),
            data_dir,
            shutdown: None,
        };
        (app, state)
    }

    /// The steps of the run's series `loss`, as stored.
    pub async fn loss_steps(&self, credential: &str, run: &str) -> Vec<i64> {
        let (status, body) = self
            .get(&format!("/v1/runs/{run}/series/loss"), credential)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|step| step.as_i64().expect("an integer step"))
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str, credential: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match credential {
            Some(credential) => request.bearer_auth(credential),
            None => request,
        }
    }

    /// Sends and returns status and JSON body (`Null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        credential: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON body with {status}: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, body)
    }

    pub async fn get(&self, path: &str, credential: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(credential), None).await
    }

    pub async fn post(&self, path: &str, credential: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(credential), Some(body))
            .await
    }

    /// `POST /v1/runs/{run}/log`.
    pub async fn log(&self, credential: &str, run: &str, batch: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/runs/{run}/log"), credential, batch)
            .await
    }

    /// `log`, asserting the batch is accepted; answers the outcome.
    pub async fn log_ok(&self, credential: &str, run: &str, batch: Value) -> Value {
        let (status, body) = self.log(credential, run, batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Registers, uploads and completes a small artifact, of `kind` if given.
    pub async fn store_artifact(
        &self,
        credential: &str,
        run: &str,
        path: &str,
        bytes: &[u8],
        kind: Option<&str>,
    ) {
        let mut body =
            serde_json::json!({"path": path, "size": bytes.len(), "sha256": sha256_hex(bytes)});
        if let Some(kind) = kind {
            body["kind"] = kind.into();
        }
        let (status, plan) = self
            .post(&format!("/v1/runs/{run}/artifacts"), credential, body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        let response = self
            .client
            .put(text(&plan["upload"], "url"))
            .header(reqwest::header::CONTENT_LENGTH, bytes.len())
            .body(bytes.to_vec())
            .send()
            .await
            .expect("the upload reaches the blob store");
        assert!(response.status().is_success(), "{}", response.status());
        let (status, artifact) = self
            .post(
                &format!("/v1/runs/{run}/artifacts/complete"),
                credential,
                serde_json::json!({"path": path}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{artifact}");
    }

    /// Logs an image: `query` holds its series and step.
    pub async fn post_image(
        &self,
        credential: &str,
        run: &str,
        query: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let response = self
            .request(
                Method::POST,
                &format!("/v1/runs/{run}/images?{query}"),
                Some(credential),
            )
            .header("content-type", "image/png")
            .body(body.to_vec())
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str, credential: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(credential), None)
            .await
    }

    /// Creates a project, returning its id.
    pub async fn create_project(&self, credential: &str, name: &str) -> String {
        let (status, body) = self
            .post("/v1/projects", credential, json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        text(&body, "id")
    }

    /// Creates a run in a project (by name or id), returning the run.
    pub async fn create_run(&self, credential: &str, project: &str, body: Value) -> Value {
        let (status, run) = self
            .post(&format!("/v1/projects/{project}/runs"), credential, body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{run}");
        run
    }

    /// A run in a project of its own, returning the run's id.
    pub async fn new_run(&self, credential: &str) -> String {
        let project = unique("project");
        self.create_project(credential, &project).await;
        text(
            &self.create_run(credential, &project, json!({})).await,
            "id",
        )
    }

    /// Signs up a new team with a random e-mail.
    pub async fn signup(&self) -> Team {
        let email = format!("{}@example.com", unique("user"));
        let password = "correct horse battery staple".to_owned();
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"team": "Whale Watchers", "email": email, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Team {
            tenant_id: text(&body, "tenant_id"),
            user_id: text(&body, "user_id"),
            token: text(&body, "token"),
            api_key: text(&body, "api_key"),
            email,
            password,
        }
    }

    /// The mail the server wrote to its outbox, oldest first.
    pub fn outbox(&self) -> Vec<sextant_storage_local::OutboxMessage> {
        sextant_storage_local::read_outbox(&self.data_dir.path().join("outbox"))
            .expect("reading the outbox")
    }

    /// The token of the newest link to `page` mailed to `to`, as a reader would click it.
    pub fn mailed_token(&self, to: &str, page: &str) -> String {
        let link = mailed_link(&self.data_dir.path().join("outbox"), to, page);
        assert!(
            link.starts_with(&self.base),
            "{link} is not under the server's URL {}",
            self.base
        );
        link_token(&link)
    }

    /// Posts a verification link's token, as the `/verify` page does.
    pub async fn verify_email(&self, token: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/v1/email/verify",
            None,
            Some(json!({"token": token})),
        )
        .await
    }

    /// Creates an API key with a role in the team, returning its secret.
    pub async fn key_with_role(&self, team: &Team, role: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/api-keys",
                &team.api_key,
                json!({"name": format!("{role} key"), "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        text(&body, "secret")
    }

    /// A new API key of `team` (its admin's), as `(id, secret)`.
    pub async fn new_api_key(&self, team: &Team, name: &str) -> (String, String) {
        let (status, body) = self
            .post("/v1/api-keys", &team.api_key, json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (text(&body, "id"), text(&body, "secret"))
    }

    /// Revokes API key `id` of `team`; answers the status.
    pub async fn revoke_api_key(&self, team: &Team, id: &str) -> StatusCode {
        self.delete(&format!("/v1/api-keys/{id}"), &team.api_key)
            .await
            .0
    }

    /// Invites an e-mail with a role and accepts, returning the new member's id and
    /// session token.
    pub async fn add_member(&self, team: &Team, role: &str) -> (String, String) {
        let email = format!("{}@example.com", unique("member"));
        let (status, invite) = self
            .post(
                "/v1/invites",
                &team.api_key,
                json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invite}");
        let (status, session) = self
            .call(
                Method::POST,
                &format!("/v1/invites/{}/accept", text(&invite, "token")),
                None,
                Some(json!({"password": "another long password"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        (text(&session, "user_id"), text(&session, "token"))
    }
}

/// A log batch of `points` steps of the series `loss` from `first_step`.
pub fn loss_batch(id: &str, first_step: i64, points: i64) -> Value {
    let steps: Vec<i64> = (first_step..first_step + points).collect();
    json!({"batch_id": id, "series": {"loss": {"steps": steps, "values": vec![0.5; steps.len()]}}})
}

/// The newest link to the page `page` in the mail to `to` in the outbox `dir`.
pub fn mailed_link(dir: &std::path::Path, to: &str, page: &str) -> String {
    sextant_storage_local::newest_link(dir, to, page)
        .expect("reading the outbox")
        .unwrap_or_else(|| panic!("no mail to {to} with a link to /{page}"))
}

/// The `token` a mailed link carries: in its query, or as its last path segment.
pub fn link_token(link: &str) -> String {
    let url = url::Url::parse(link).expect("a link");
    url.query_pairs()
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.into_owned())
        .or_else(|| url.path_segments()?.next_back().map(str::to_owned))
        .expect("a token in the link")
}

/// A signed-up team and its first admin.
#[derive(Debug, Clone)]
pub struct Team {
    pub tenant_id: String,
    pub user_id: String,
    pub token: String,
    pub api_key: String,
    pub email: String,
    pub password: String,
}

/// A string field of a JSON body, or a panic naming what was missing.
pub fn text(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {body}"))
        .to_owned()
}

/// The error code of an error envelope, asserting the envelope's shape.
pub fn error_code(body: &Value) -> String {
    assert!(
        body["error"]["message"].is_string(),
        "not an error envelope: {body}"
    );
    text(&body["error"], "code")
}

/// Runs each case, an async fn taking what `$spawn` returns, as its own test in a
/// module named `$module` (say, one module per storage backend). Attributes before the
/// module's name go on every test.
#[macro_export]
macro_rules! cases {
    ($(#[$attribute:meta])* $module:ident, $spawn:path; $($case:ident),+ $(,)?) => {
        mod $module {
            $crate::cases!(@each [$(#[$attribute])*] $spawn; $($case),+);
        }
    };
    // One case at a time: the attributes repeat once per case, which a single
    // repetition over the cases cannot express.
    (@each [$($attribute:tt)*] $spawn:path; $case:ident $(, $rest:ident)*) => {
        $($attribute)*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            super::$case($spawn().await).await;
        }
        $crate::cases!(@each [$($attribute)*] $spawn; $($rest),*);
    };
    (@each [$($attribute:tt)*] $spawn:path;) => {};
}

/// `cases!` for a `$spawn` that needs moto's server: `cargo test` on a fresh clone
/// reports them ignored instead of failing; `scripts/test.sh` starts the emulator and
/// runs them (`--run-ignored all`).
#[macro_export]
macro_rules! aws_cases {
    ($module:ident, $spawn:path; $($case:ident),+ $(,)?) => {
        $crate::cases!(
            #[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
            $module, $spawn; $($case),+
        );
    };
}

/// An app state over `storage` as the domain tests use it: test signing keys and the
/// default settings.
pub fn state_on(storage: sextant_storage::Storage) -> sextant_edge::state::AppState {
    let keyring =
        sextant_domain::credentials::jwt::Keyring::new(&[("test".to_owned(), vec![3; 32])])
            .expect("keyring");
    sextant_edge::state::AppState::new(storage, keyring, sextant_edge::state::Settings::new(None))
}

/// A state for domain tests on the embedded store and a local blob directory, and the
/// directory, which must outlive it.
pub async fn embedded_state() -> (sextant_edge::state::AppState, Box<dyn std::any::Any + Send>) {
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv = sextant_storage_local::EmbeddedKv::open(&dir.path().join("store.redb"))
        .expect("opening the store");
    let storage = sextant_storage::Storage {
        kv: Arc::new(kv),
        blobs,
    };
    (state_on(storage), Box::new(dir))
}

/// A state for domain tests on a fresh table and bucket of the emulator (nothing to
/// keep alive; the second half matches `embedded_state`).
pub async fn aws_state() -> (sextant_edge::state::AppState, Box<dyn std::any::Any + Send>) {
    let (_, kv, blobs) = fresh_aws_storage().await;
    let storage = sextant_storage::Storage {
        kv: Arc::new(kv),
        blobs: Arc::new(blobs),
    };
    (state_on(storage), Box::new(()))
}

/// Signs up a new team in `state` and answers its admin, as its first API key.
pub async fn signed_up_caller(
    state: &sextant_edge::state::AppState,
) -> sextant_domain::credentials::Caller {
    use sextant_domain::accounts::{self, DisplayName, Email};
    use sextant_edge::auth;
    let signed_up = accounts::signup(
        &state.store,
        state.sessions(),
        DisplayName::parse("team", "Domain tests").expect("a team name"),
        Email::parse(&format!("{}@example.com", unique("team"))).expect("an e-mail"),
        sextant_domain::credentials::password::Password::parse("a long enough password".into())
            .expect("a password"),
        std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
    )
    .await
    .expect("signup");
    auth::authenticate(
        state,
        &signed_up.api_key,
        sextant_domain::credentials::Plane::Control,
    )
    .await
    .expect("authenticate")
}

/// Signs up a new team in `state` and starts a run in a new project of it: the admin
/// and the run.
pub async fn signed_up_run(
    state: &sextant_edge::state::AppState,
) -> (
    sextant_domain::credentials::Caller,
    sextant_domain::ids::RunId,
) {
    use sextant_domain::projects::{self, ProjectName};
    use sextant_domain::runs::{self, NewRun};
    let caller = signed_up_caller(state).await;
    let project = projects::create(&state.store, &caller, ProjectName::parse("p").unwrap())
        .await
        .expect("a project");
    let run = runs::create(&state.store, &caller, &project, NewRun::default())
        .await
        .expect("a run")
        .id;
    (caller, run)
}

/// Logs `n` points of one series (and a line of text) to `run` as batch `id`, as the
/// ingest function does; answers the points accepted (none for a retried batch).
pub async fn log_points(
    state: &sextant_edge::state::AppState,
    caller: &sextant_domain::credentials::Caller,
    run: sextant_domain::ids::RunId,
    id: &str,
    n: usize,
) -> u64 {
    use sextant_domain::series::batch::{self, LogBatch};
    let steps: Vec<usize> = (0..n).collect();
    let batch: LogBatch = serde_json::from_value(serde_json::json!({
        "batch_id": id,
        "series": {"loss": {"steps": steps, "values": vec![0.5; n]}},
        "text": {"stdout": [{"step": 0, "text": "hello"}]},
    }))
    .expect("a batch");
    batch::log(&state.store, state.intake(), &caller.tenant, run, batch)
        .await
        .expect("logged")
        .accepted
}

/// Gives `run` something in each store: three points of `loss` as batch `id`, and one
/// image whose bytes `n` makes differ from its siblings', so no two runs share an
/// object and a deletion that misses one leaves it to be found.
pub async fn log_points_and_an_image(
    state: &sextant_edge::state::AppState,
    tenant: &sextant_domain::tenancy::Tenant,
    run: sextant_domain::ids::RunId,
    id: &str,
    n: u8,
) {
    use sextant_domain::images;
    use sextant_domain::series::batch::{self, LogBatch};
    let batch: LogBatch = serde_json::from_value(json!({
        "batch_id": id,
        "series": {"loss": {"steps": [0, 1, 2], "values": [0.5, 0.25, 0.125]}},
    }))
    .expect("a valid batch");
    batch::log(&state.store, state.intake(), tenant, run, batch)
        .await
        .expect("a batch");
    let mut image = PNG.to_vec();
    image.push(n);
    images::log(
        &state.store,
        state.intake(),
        tenant,
        run,
        "samples",
        1,
        image.into(),
    )
    .await
    .expect("an image");
}

/// `state` on a clock the test moves from `start`, with a signed-up team and a run.
pub async fn run_on_a_manual_clock(
    state: sextant_edge::state::AppState,
    start: time::OffsetDateTime,
) -> (
    sextant_edge::state::AppState,
    Arc<sextant_storage::clock::ManualClock>,
    sextant_domain::credentials::Caller,
    sextant_domain::ids::RunId,
) {
    let clock = Arc::new(sextant_storage::clock::ManualClock::starting_at(start));
    let state = state.with_clock(clock.clone());
    let (caller, run) = signed_up_run(&state).await;
    (state, clock, caller, run)
}

/// SHA-256 in lowercase hex, as the artifact API takes it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Serves `state` on `listener` with the routes `sextant serve` mounts (blobs are
/// whatever the state's store hands out URLs for), until the test ends.
pub fn serve_on(listener: tokio::net::TcpListener, state: sextant_edge::state::AppState) {
    let routes = sextant_api::routes().merge(sextant_ingest::routes());
    let router = sextant_edge::http::api_service(routes, state);
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
}

/// `serve_on` a fresh loopback port; answers the base URL.
pub async fn serve_state(state: sextant_edge::state::AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding loopback");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    serve_on(listener, state);
    base
}

/// Every item of a test table on the emulator, as DynamoDB stores it.
pub async fn scan_table(
    config: &AwsStorageConfig,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(config.endpoint_url.clone().expect("an emulator endpoint"))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(&config.table)
        .send()
        .await
        .expect("scanning the table")
        .items
        .unwrap_or_default()
}

/// A run as the API answers it, without what changes by the second on its own: the
/// byte-seconds its stored bytes add while time passes. For checking that nothing
/// else changed it.
pub fn without_elapsed_storage(mut run: Value) -> Value {
    run["usage"]["byte_seconds"].take();
    run
}

/// A browser over real HTTP, for the page tests: a client that keeps cookies and does
/// not follow redirects (so each 303 is seen), forms filled from the pages themselves
/// (their CSRF field included), and the HTML read with CSS selectors.
pub mod browser {
    use std::sync::Arc;

    use reqwest::cookie::{CookieStore, Jar};
    use reqwest::header::{self, HeaderMap};
    use reqwest::{StatusCode, redirect};
    use scraper::{Html, Selector};
    use serde_json::Value;

    use crate::{Team, TestApp};

    /// A page as the browser got it.
    #[derive(Debug)]
    pub struct Page {
        pub status: StatusCode,
        pub headers: HeaderMap,
        pub body: String,
    }

    pub fn selector(css: &str) -> Selector {
        Selector::parse(css).unwrap_or_else(|err| panic!("selector {css:?}: {err}"))
    }

    impl Page {
        pub fn doc(&self) -> Html {
            Html::parse_document(&self.body)
        }

        pub fn count(&self, css: &str) -> usize {
            self.doc().select(&selector(css)).count()
        }

        pub fn texts(&self, css: &str) -> Vec<String> {
            self.doc()
                .select(&selector(css))
                .map(|element| element.text().collect::<String>())
                .collect()
        }

        pub fn text(&self, css: &str) -> String {
            self.texts(css)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("no {css} in {}", self.body))
        }

        pub fn attrs(&self, css: &str, name: &str) -> Vec<String> {
            self.doc()
                .select(&selector(css))
                .filter_map(|element| element.value().attr(name).map(str::to_owned))
                .collect()
        }

        pub fn attr(&self, css: &str, name: &str) -> String {
            self.attrs(css, name)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("no {css}[{name}] in {}", self.body))
        }

        pub fn header(&self, name: header::HeaderName) -> String {
            self.headers
                .get(&name)
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("no {name} header"))
        }

        pub fn location(&self) -> String {
            assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
            self.header(header::LOCATION)
        }

        /// The spec the interactive charts are drawn from.
        pub fn chart_spec(&self) -> Value {
            serde_json::from_str(&self.text("script#chart-spec")).expect("the chart spec is JSON")
        }

        pub fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {}", self.body))
        }

        pub fn set_cookie(&self, name: &str) -> String {
            self.headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .find(|cookie| cookie.starts_with(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no Set-Cookie for {name} in {:?}", self.headers))
        }
    }

    /// A browser: keeps cookies, sends forms, does not follow redirects.
    #[derive(Debug)]
    pub struct Browser {
        base: String,
        client: reqwest::Client,
        jar: Arc<Jar>,
    }

    impl Browser {
        pub fn new(base: &str) -> Self {
            let jar = Arc::new(Jar::default());
            let client = reqwest::Client::builder()
                .cookie_provider(Arc::clone(&jar))
                .redirect(redirect::Policy::none())
                .build()
                .expect("a client");
            Self {
                base: base.to_owned(),
                client,
                jar,
            }
        }

        pub fn url(&self, path: &str) -> String {
            if path.starts_with("http") {
                path.to_owned()
            } else {
                format!("{}{path}", self.base)
            }
        }

        pub async fn send(&self, request: reqwest::RequestBuilder) -> Page {
            let response = request.send().await.expect("the server answers");
            Page {
                status: response.status(),
                headers: response.headers().clone(),
                body: response.text().await.unwrap_or_default(),
            }
        }

        pub async fn get(&self, path: &str) -> Page {
            self.send(self.client.get(self.url(path))).await
        }

        pub fn form_request(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            self.client
                .post(self.url(path))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
        }

        pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
            self.send(self.form_request(path, fields)).await
        }

        /// Opens `path`, fills in the form `form` (keeping its CSRF field) and sends it
        /// where the form says.
        pub async fn submit(&self, path: &str, form: &str, fields: &[(&str, &str)]) -> Page {
            let page = self.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
            self.submit_on(&page, form, fields).await
        }

        pub async fn submit_on(&self, page: &Page, form: &str, fields: &[(&str, &str)]) -> Page {
            assert_eq!(
                page.attr(form, "method").to_lowercase(),
                "post",
                "{form} posts"
            );
            let action = page.attr(form, "action");
            let csrf = page.attr(&format!("{form} input[name=csrf]"), "value");
            let mut all = vec![("csrf", csrf.as_str())];
            all.extend_from_slice(fields);
            self.post(&action, &all).await
        }

        pub fn cookie(&self, name: &str) -> Option<String> {
            let cookies = self.jar.cookies(&self.base.parse().unwrap())?;
            cookies
                .to_str()
                .unwrap()
                .split("; ")
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_owned())
        }

        pub fn set_cookie(&self, name: &str, value: &str) {
            self.jar.add_cookie_str(
                &format!("{name}={value}; Path=/"),
                &self.base.parse().unwrap(),
            );
        }
    }

    /// A browser logged in through the form as `team`'s admin.
    pub async fn logged_in(app: &TestApp, team: &Team) -> Browser {
        let browser = Browser::new(&app.base);
        let page = browser
            .submit(
                "/login",
                "form#login",
                &[("email", &team.email), ("password", &team.password)],
            )
            .await;
        assert_eq!(page.location(), "/projects");
        browser
    }
}

/// The mail SES (as moto emulates it) was asked to send, read back as a person would
/// find it, for tests of the SES adapter and of servers that mail through it.
pub mod moto_mail {
    use serde_json::Value;

    /// A message as moto recorded it: moto keeps only the HTML of a simple message.
    #[derive(Debug)]
    pub struct SentMail {
        pub id: String,
        pub to: String,
        pub subject: String,
        pub html: String,
    }

    /// Verifies `from` as a sender on the emulator, which the adapter does not do.
    pub async fn verify_sender(from: &str) {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(super::aws_endpoint())
            .load()
            .await;
        aws_sdk_sesv2::Client::new(&sdk)
            .create_email_identity()
            .email_identity(from)
            .send()
            .await
            .expect("verifying the sender on the emulator");
    }

    /// Every message sent from `from`, oldest first: moto records each message SES is
    /// asked to send, and lists them with all its other models in its data dump.
    pub async fn sent_from(endpoint: &str, from: &str) -> Vec<SentMail> {
        let client = reqwest::Client::new();
        // The dump reads each S3 object's Glacier-restore state, and moto, finding the
        // restore "done" on first read, looks for the object's bucket and fails the
        // whole dump (500) when there is none, as for the multipart parts the blob
        // tests leave. Holding that state where it starts avoids it; nothing here
        // restores objects.
        client
            .post(format!("{endpoint}/moto-api/state-manager/set-transition"))
            .json(&serde_json::json!({
                "model_name": "s3::keyrestore",
                "transition": {"progression": "manual", "times": i64::MAX},
            }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("holding moto's S3 restore state");
        // The dump walks models other tests are changing at the same time, which can
        // fail it now and then.
        let mut attempts = 0;
        let data: Value = loop {
            let dump = client
                .get(format!("{endpoint}/moto-api/data.json"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            match dump {
                Ok(dump) => break dump.json().await.expect("moto's data as JSON"),
                Err(err) if attempts < 5 => {
                    attempts += 1;
                    eprintln!("moto's data dump failed ({err}); trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(err) => panic!("moto's data dump: {err}"),
            }
        };
        data["ses"]["Message"]
            .as_array()
            .expect("moto's SES messages")
            .iter()
            .filter(|message| message["source"] == from)
            .map(|message| {
                let field = |name: &str| {
                    message[name]
                        .as_str()
                        .unwrap_or_else(|| panic!("no {name} in {message}"))
                        .to_owned()
                };
                let to = match message["destinations"]["ToAddresses"].as_array() {
                    Some(to) if to.len() == 1 => to[0].as_str().expect("an address").to_owned(),
                    _ => panic!("not one recipient in {message}"),
                };
                SentMail {
                    id: field("id"),
                    to,
                    subject: field("subject"),
                    html: field("body"),
                }
            })
            .collect()
    }
}
