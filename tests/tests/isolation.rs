//! Tenancy and roles on every endpoint: another team's resources answer 404 exactly
//! as missing ones do, lists never show them, and a viewer's writes answer 403.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_tests::{PNG, Team, TestApp, error_code, text, unique};

/// Team A with one of everything, and team B, whose admin probes A's ids.
struct World {
    app: TestApp,
    a: Team,
    b: Team,
    a_key_id: String,
    a_invite_id: String,
    a_member_id: String,
    a_project_id: String,
    /// A viewer of team A's session, which the sweep uses for the operations only a
    /// session may call, and its id (ending it is the last of them: a log-out).
    a_viewer_session: String,
    a_viewer_session_id: String,
}

async fn world(app: TestApp) -> World {
    let a = app.signup().await;
    let b = app.signup().await;
    let (_, key) = app
        .post("/v1/api-keys", &a.api_key, json!({"name": "a's"}))
        .await;
    let (_, invite) = app
        .post(
            "/v1/invites",
            &a.api_key,
            json!({"email": format!("{}@example.com", unique("a-invitee"))}),
        )
        .await;
    let (a_member_id, _) = app.add_member(&a, "member").await;
    let (_, a_viewer_session) = app.add_member(&a, "viewer").await;
    let (_, sessions) = app.get("/v1/sessions", &a_viewer_session).await;
    let a_viewer_session_id = sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|session| session["current"] == true)
        .map(|session| text(session, "id"))
        .expect("the current session");
    let (_, project) = app
        .post(
            "/v1/projects",
            &a.api_key,
            json!({"name": "a-secret-project"}),
        )
        .await;
    World {
        a_key_id: text(&key, "id"),
        a_invite_id: text(&invite, "id"),
        a_member_id,
        a_project_id: text(&project, "id"),
        a_viewer_session,
        a_viewer_session_id,
        app,
        a,
        b,
    }
}

/// What `TestApp::add_member` gives the members it adds.
const MEMBER_PASSWORD: &str = "another long password";

/// Every route that names a resource, pointed at team A's resources.
fn targeted_routes(w: &World) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::DELETE, format!("/v1/api-keys/{}", w.a_key_id), None),
        (
            Method::DELETE,
            format!("/v1/invites/{}", w.a_invite_id),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/members/{}", w.a_member_id),
            Some(json!({"role": "viewer"})),
        ),
        (
            Method::DELETE,
            format!("/v1/members/{}", w.a_member_id),
            None,
        ),
        (
            Method::GET,
            format!("/v1/projects/{}", w.a_project_id),
            None,
        ),
        (Method::GET, "/v1/projects/a-secret-project".into(), None),
        (
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({"name": "stolen", "user_id": w.a_member_id})),
        ),
    ]
}

async fn another_teams_resources_answer_404(app: TestApp) {
    let w = world(app).await;
    for (method, path, body) in targeted_routes(&w) {
        let (status, response) = w
            .app
            .call(method.clone(), &path, Some(&w.b.api_key), body)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {response}");
        assert_eq!(error_code(&response), "not_found");
    }
    // Nothing of A's was touched.
    let (_, keys) = w.app.get("/v1/api-keys", &w.a.api_key).await;
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 2);
    let (_, members) = w.app.get("/v1/members", &w.a.api_key).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
    assert!(members.to_string().contains("\"member\""));
    let (_, invites) = w.app.get("/v1/invites", &w.a.api_key).await;
    assert_eq!(invites["invites"].as_array().unwrap().len(), 1);
}

async fn lists_show_only_the_callers_team(app: TestApp) {
    let w = world(app).await;
    let a_ids = [
        &w.a_key_id,
        &w.a_invite_id,
        &w.a_member_id,
        &w.a_project_id,
        &w.a.user_id,
        &w.a.tenant_id,
    ];
    for path in [
        "/v1/api-keys",
        "/v1/invites",
        "/v1/members",
        "/v1/projects",
        "/v1/me",
    ] {
        let (status, listed) = w.app.get(path, &w.b.api_key).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let listed = listed.to_string();
        for id in a_ids {
            assert!(!listed.contains(id.as_str()), "{path} shows {id}: {listed}");
        }
    }
}

#[tokio::test]
async fn another_teams_resources_answer_404_on_the_embedded_store() {
    another_teams_resources_answer_404(TestApp::spawn().await).await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn another_teams_resources_answer_404_on_dynamodb() {
    another_teams_resources_answer_404(TestApp::spawn_on_aws().await).await;
}

#[tokio::test]
async fn lists_show_only_the_callers_team_on_the_embedded_store() {
    lists_show_only_the_callers_team(TestApp::spawn().await).await;
}

#[ignore = "needs moto's server at SEXTANT_TEST_AWS_ENDPOINT; scripts/test.sh starts it"]
#[tokio::test]
async fn lists_show_only_the_callers_team_on_dynamodb() {
    lists_show_only_the_callers_team(TestApp::spawn_on_aws().await).await;
}

#[tokio::test]
async fn a_viewer_cannot_write_and_a_member_cannot_manage_the_team() {
    let w = world(TestApp::spawn().await).await;
    let viewer = w.app.key_with_role(&w.a, "viewer").await;
    let member = w.app.key_with_role(&w.a, "member").await;
    let writes = [(
        Method::POST,
        "/v1/projects".to_owned(),
        Some(json!({"name": "viewer-made"})),
    )];
    let management = vec![
        (
            Method::POST,
            "/v1/api-keys".to_owned(),
            Some(json!({"name": "k"})),
        ),
        (Method::GET, "/v1/api-keys".to_owned(), None),
        (Method::DELETE, format!("/v1/api-keys/{}", w.a_key_id), None),
        (
            Method::POST,
            "/v1/invites".to_owned(),
            Some(json!({"email": "someone@example.com"})),
        ),
        (Method::GET, "/v1/invites".to_owned(), None),
        (
            Method::DELETE,
            format!("/v1/invites/{}", w.a_invite_id),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/members/{}", w.a_member_id),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::DELETE,
            format!("/v1/members/{}", w.a_member_id),
            None,
        ),
    ];
    for (method, path, body) in writes.iter().chain(&management) {
        let (status, response) = w
            .app
            .call(method.clone(), path, Some(&viewer), body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "viewer {method} {path}: {response}"
        );
        assert_eq!(error_code(&response), "forbidden");
    }
    for (method, path, body) in &management {
        let (status, response) = w
            .app
            .call(method.clone(), path, Some(&member), body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "member {method} {path}: {response}"
        );
    }
    // Reads stay open to viewers.
    for path in ["/v1/projects", "/v1/members", "/v1/me"] {
        assert_eq!(w.app.get(path, &viewer).await.0, StatusCode::OK, "{path}");
    }
    // And nothing the viewer tried happened.
    let (_, projects) = w.app.get("/v1/projects", &w.a.api_key).await;
    assert_eq!(projects["projects"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_non_public_route_needs_a_credential() {
    let w = world(TestApp::spawn().await).await;
    let mut routes = targeted_routes(&w);
    routes.extend([
        (Method::GET, "/v1/me".to_owned(), None),
        (Method::GET, "/v1/api-keys".to_owned(), None),
        (Method::GET, "/v1/invites".to_owned(), None),
        (Method::GET, "/v1/members".to_owned(), None),
        (Method::GET, "/v1/projects".to_owned(), None),
        (
            Method::POST,
            "/v1/projects".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (Method::POST, "/v1/auth/token".to_owned(), None),
    ]);
    for (method, path, body) in routes {
        let (status, response) = w.app.call(method.clone(), &path, None, body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {response}"
        );
    }
}

/// Team A's resources, one of each kind an operation can name, for the sweep.
struct Named {
    project: String,
    run: String,
    job: String,
    share: String,
    dataset: String,
    month: String,
}

async fn one_of_everything(w: &World) -> Named {
    let key = &w.a.api_key;
    let project = w.a_project_id.clone();
    let run = text(&w.app.create_run(key, &project, json!({})).await, "id");
    w.app
        .log_ok(
            key,
            &run,
            json!({
                "batch_id": unique("batch"),
                "series": {"loss": {"steps": [0, 1], "values": [1.0, 0.5]}},
                "text": {"stdout": [{"step": 0, "text": "hello"}]},
            }),
        )
        .await;
    let (status, image) = w
        .app
        .post_image(key, &run, "series=samples&step=3", PNG)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    w.app
        .store_artifact(key, &run, "weights.bin", b"weights", None)
        .await;
    let dataset = "00112233445566778899aabbccddeeff".to_owned();
    let (status, input) = w
        .app
        .post(
            &format!("/v1/runs/{run}/inputs"),
            key,
            json!({"dataset": {"uri": "s3://data/a", "hash": dataset, "name": "a"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{input}");
    let (status, share) = w
        .app
        .post(&format!("/v1/runs/{run}/shares"), key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{share}");
    let (status, job) = w
        .app
        .post(
            &format!("/v1/projects/{project}/queues/default/jobs"),
            key,
            json!({"command": ["true"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let month = time::OffsetDateTime::now_utc();
    Named {
        project,
        run,
        job: text(&job, "run_id"),
        share: text(&share, "id"),
        dataset,
        month: format!("{:04}-{:02}", month.year(), u8::from(month.month())),
    }
}

/// One documented operation, with its parameters filled in from team A's resources.
struct Probe {
    method: Method,
    template: String,
    path: String,
    scopes: Option<Vec<String>>,
    operator: bool,
    /// Whether the operation names one of A's resources (in its path or query), so
    /// another team must be told it does not exist.
    names_a_resource: bool,
    json_body: bool,
    /// On the data plane, where access and job tokens are trusted on their signature.
    data_plane: bool,
    /// A job's credential may call it on its own run.
    for_jobs: bool,
    /// Only a signed-in member's session may call it, on their own account
    /// (`x-sextant-credential: session`); any role may.
    session_only: bool,
}

impl Probe {
    fn what(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

fn path_value(template: &str, param: &str, named: &Named, w: &World) -> String {
    match param {
        "project" => named.project.clone(),
        "run" if template.starts_with("/v1/jobs/") => named.job.clone(),
        "run" => named.run.clone(),
        "queue" => "default".to_owned(),
        "id" if template.starts_with("/v1/api-keys/") => w.a_key_id.clone(),
        "id" if template.starts_with("/v1/invites/") => w.a_invite_id.clone(),
        "id" if template.starts_with("/v1/members/") => w.a_member_id.clone(),
        "id" if template.starts_with("/v1/shares/") => named.share.clone(),
        "id" if template.starts_with("/v1/sessions/") => w.a_viewer_session_id.clone(),
        "hash" => named.dataset.clone(),
        "name" => "loss".to_owned(),
        "series" => "samples".to_owned(),
        "path" => "weights.bin".to_owned(),
        "month" => named.month.clone(),
        other => panic!(
            "the sweep knows no value for the path parameter {other:?} of {template}; \
             teach `path_value` one so the new route is swept"
        ),
    }
}

fn query_value(template: &str, param: &str, named: &Named) -> String {
    match param {
        "runs" => named.run.clone(),
        "series" => "samples".to_owned(),
        "step" => "4".to_owned(),
        // Not team A's name: a team deletion that got past its role check would still
        // delete nothing.
        "confirm" => "not the team's name".to_owned(),
        other => panic!(
            "the sweep knows no value for the required query parameter {other:?} of \
             {template}; teach `query_value` one so the route is swept"
        ),
    }
}

/// Bodies that pass validation, so what answers is the tenant and role check and not
/// the body's; everything else is sent `{}`.
fn valid_body(method: &Method, template: &str) -> Value {
    match (method.as_str(), template) {
        ("POST", "/v1/projects") => json!({"name": "swept"}),
        ("POST", "/v1/api-keys") => json!({"name": "swept"}),
        ("POST", "/v1/invites") => json!({"email": "swept@example.com"}),
        ("PATCH", "/v1/members/{id}") => json!({"role": "viewer"}),
        ("PUT", "/v1/budget") => json!({"monthly_budget": "25.00", "hard_stop": false}),
        ("POST", "/v1/projects/{project}/queues/{queue}/jobs") => json!({"command": ["true"]}),
        ("POST", "/v1/projects/{project}/queues/{queue}/claim") => json!({"agent": "sweeper"}),
        ("POST", "/v1/jobs/{run}/heartbeat") => json!({"attempt": 1}),
        ("POST", "/v1/jobs/{run}/finish") => json!({"attempt": 1, "exit_code": 0}),
        ("POST", "/v1/runs/{run}/artifacts") => {
            json!({"path": "stolen.bin", "size": 1, "sha256": sextant_tests::sha256_hex(b"x")})
        }
        ("POST", "/v1/runs/{run}/artifacts/complete") => json!({"path": "weights.bin"}),
        // The password of the members the sweep signs in as: a change to the same.
        ("POST", "/v1/password/change") => {
            json!({"current_password": MEMBER_PASSWORD, "new_password": MEMBER_PASSWORD})
        }
        ("POST", "/v1/runs/{run}/inputs") => {
            json!({"dataset": {"uri": "s3://data/b", "hash": "ffeeddccbbaa99887766554433221100"}})
        }
        _ => json!({}),
    }
}

fn probes(named: &Named, w: &World) -> Vec<Probe> {
    let document = serde_json::to_value(sextant_api::openapi()).expect("the document");
    let mut probes = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let method: Method = method.to_uppercase().parse().expect("an HTTP method");
            let security = operation["security"].as_array().expect("security");
            let requirement = security.first().and_then(Value::as_object);
            let scopes: Option<Vec<String>> = requirement
                .and_then(|requirement| requirement.get("bearer"))
                .map(|scopes| {
                    scopes
                        .as_array()
                        .expect("scopes")
                        .iter()
                        .map(|scope| scope.as_str().expect("a scope").to_owned())
                        .collect()
                });
            let operator = requirement.is_some_and(|r| r.contains_key("operator"));
            let mut path = template.clone();
            let mut query = Vec::new();
            let mut names_a_resource = false;
            // A public operation's credential is in its path (a share or invite
            // token), tested where those are made; there is nothing of A's to fill in.
            let parameters = if scopes.is_some() || operator {
                operation["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            for parameter in &parameters {
                let name = parameter["name"].as_str().expect("a parameter name");
                match parameter["in"].as_str() {
                    Some("path") => {
                        let value = path_value(template, name, named, w);
                        names_a_resource |= matches!(name, "project" | "run" | "id" | "hash");
                        path = path.replace(&format!("{{{name}}}"), &value);
                    }
                    Some("query") if parameter["required"] == true => {
                        names_a_resource |= name == "runs";
                        query.push(format!("{name}={}", query_value(template, name, named)));
                    }
                    _ => {}
                }
            }
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let json_body = operation["requestBody"]["content"]
                .as_object()
                .is_none_or(|content| content.contains_key("application/json"));
            probes.push(Probe {
                method,
                template: template.clone(),
                path,
                scopes,
                operator,
                names_a_resource,
                json_body,
                data_plane: operation["x-sextant-plane"] == "data",
                for_jobs: operation["x-sextant-job"] == true,
                session_only: operation["x-sextant-credential"] == "session",
            });
        }
    }
    probes
}

async fn send(app: &TestApp, probe: &Probe, credential: Option<&str>) -> (StatusCode, Value) {
    let mut request = app
        .request(probe.method.clone(), &probe.path, credential)
        .header("accept", "application/json");
    if probe.method != Method::GET && probe.method != Method::DELETE {
        request = if probe.json_body {
            request.json(&valid_body(&probe.method, &probe.template))
        } else {
            request.header("content-type", "image/png").body(PNG)
        };
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Walks every operation in the published OpenAPI document, so a new endpoint is held
/// to tenancy and roles the moment it is declared: without a credential it answers
/// 401; pointed at team A's resources by team B's admin it answers 404 `not_found`;
/// a viewer's writes and a member's administration answer 403; a viewer's reads go
/// through. A stays whole throughout.
#[tokio::test]
async fn every_documented_operation_holds_its_tenant_and_its_role() {
    let w = world(TestApp::spawn().await).await;
    let named = one_of_everything(&w).await;
    let viewer = w.app.key_with_role(&w.a, "viewer").await;
    let member = w.app.key_with_role(&w.a, "member").await;
    let probes = probes(&named, &w);
    let (mut public, mut foreign, mut refused, mut read) = (0, 0, 0, 0);
    for probe in &probes {
        let what = probe.what();
        if probe.operator {
            let (status, body) = send(&w.app, probe, Some(&w.a.api_key)).await;
            assert!(
                matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{what} with a team's key: {status} {body}"
            );
            continue;
        }
        let Some(scopes) = &probe.scopes else {
            public += 1;
            continue;
        };
        let (status, body) = send(&w.app, probe, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what} without a credential: {body}"
        );

        if probe.session_only {
            // An operation on the caller's own account: no key may call it, another
            // team's member reaches nothing of A's with it, and a member of any role
            // may call it on their own account.
            let (status, body) = send(&w.app, probe, Some(&w.a.api_key)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a key: {body}");
            if probe.names_a_resource {
                let (status, body) = send(&w.app, probe, Some(&w.b.token)).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{what} from team B: {body}");
                foreign += 1;
            }
            let (status, body) = send(&w.app, probe, Some(&w.a_viewer_session)).await;
            assert!(
                status.is_success(),
                "{what} by a viewer's session: {status} {body}"
            );
            read += 1;
            continue;
        }

        if probe.names_a_resource {
            let (status, body) = send(&w.app, probe, Some(&w.b.api_key)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{what} from team B: {body}");
            assert_eq!(error_code(&body), "not_found", "{what} from team B");
            foreign += 1;
        }

        let needs = |scope: &str| scopes.iter().any(|s| s == scope);
        if needs("write") || needs("admin") {
            let (status, body) = send(&w.app, probe, Some(&viewer)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} by a viewer: {body}");
            assert_eq!(error_code(&body), "forbidden");
            refused += 1;
        }
        if needs("admin") {
            let (status, body) = send(&w.app, probe, Some(&member)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} by a member: {body}");
        }
        if needs("read") {
            let (status, body) = send(&w.app, probe, Some(&viewer)).await;
            assert!(
                status.is_success() || status.is_redirection(),
                "{what} by a viewer: {status} {body}"
            );
            read += 1;
        }
    }
    eprintln!(
        "swept {} operations: {foreign} refused to another team, {refused} refused to a \
         viewer, {read} read by a viewer, {public} public",
        probes.len()
    );
    assert!(foreign > 30, "only {foreign} operations name a resource");

    // Nothing of A's was touched by the refused calls.
    let key = &w.a.api_key;
    for path in [
        format!("/v1/runs/{}", named.run),
        format!("/v1/projects/{}", named.project),
        format!("/v1/jobs/{}", named.job),
        format!("/v1/runs/{}/series/loss", named.run),
        format!("/v1/datasets/{}", named.dataset),
    ] {
        assert_eq!(w.app.get(&path, key).await.0, StatusCode::OK, "{path}");
    }
    let (_, keys) = w.app.get("/v1/api-keys", key).await;
    assert_eq!(keys["api_keys"].as_array().expect("keys").len(), 4);
    let (_, artifacts) = w
        .app
        .get(&format!("/v1/runs/{}/artifacts", named.run), key)
        .await;
    assert!(!artifacts.to_string().contains("stolen.bin"), "{artifacts}");
}

/// A credential that outlived its grant, and what it may still do.
struct Ended {
    what: &'static str,
    credential: String,
    /// The role its member has now; `None` once the grant is gone altogether.
    role_now: Option<&'static str>,
    /// A token trusted on its signature on the data plane until it expires.
    signed_token: bool,
    /// A member's session, the only credential operations on one's own account take.
    session: bool,
}

/// Exchanges an API key for an access token.
async fn access_token(app: &TestApp, key: &str) -> String {
    let (status, body) = app
        .call(Method::POST, "/v1/auth/token", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    text(&body, "token")
}

/// An API key for member `user` with `role`, and its id.
async fn key_for(app: &TestApp, team: &Team, user: &str, role: &str) -> (String, String) {
    let (status, key) = app
        .post(
            "/v1/api-keys",
            &team.api_key,
            json!({"name": "theirs", "user_id": user, "role": role}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (text(&key, "secret"), text(&key, "id"))
}

/// Walks every documented operation with credentials whose grant was revoked, removed
/// or demoted after they were issued. Once the revoke, removal or role change has
/// answered, none of them does anything beyond what the grant allows now: a revoked
/// key's access token, a removed member's session, key and access token answer 401,
/// and a demoted admin's session, key and access token act as the viewer they now
/// are. The only exception is the data plane (`x-sextant-plane: data`), where access
/// tokens are trusted on their signature alone until they expire.
#[tokio::test]
async fn a_revoked_removed_or_demoted_grant_stops_at_once_on_every_documented_operation() {
    let w = world(TestApp::spawn().await).await;
    let named = one_of_everything(&w).await;
    let app = &w.app;

    let leaked = w.app.key_with_role(&w.a, "admin").await;
    let leaked_token = access_token(app, &leaked).await;
    let (_, me) = app.get("/v1/me", &leaked).await;
    let (status, _) = app
        .delete(
            &format!("/v1/api-keys/{}", text(&me, "api_key_id")),
            &w.a.api_key,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (removed, removed_session) = app.add_member(&w.a, "admin").await;
    let (removed_key, _) = key_for(app, &w.a, &removed, "admin").await;
    let removed_token = access_token(app, &removed_key).await;
    let (status, _) = app
        .delete(&format!("/v1/members/{removed}"), &w.a.api_key)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (demoted, demoted_session) = app.add_member(&w.a, "admin").await;
    let (demoted_key, _) = key_for(app, &w.a, &demoted, "admin").await;
    let demoted_token = access_token(app, &demoted_key).await;
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/members/{demoted}"),
            Some(&w.a.api_key),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let ended = [
        Ended {
            what: "a revoked key's access token",
            credential: leaked_token,
            role_now: None,
            session: false,
            signed_token: true,
        },
        Ended {
            what: "a removed member's session",
            credential: removed_session,
            role_now: None,
            session: true,
            signed_token: false,
        },
        Ended {
            what: "a removed member's key",
            credential: removed_key,
            role_now: None,
            session: false,
            signed_token: false,
        },
        Ended {
            what: "a removed member's access token",
            credential: removed_token,
            role_now: None,
            session: false,
            signed_token: true,
        },
        Ended {
            what: "a demoted admin's session",
            credential: demoted_session,
            role_now: Some("viewer"),
            session: true,
            signed_token: false,
        },
        Ended {
            what: "a demoted admin's key",
            credential: demoted_key,
            role_now: Some("viewer"),
            session: false,
            signed_token: false,
        },
        Ended {
            what: "a demoted admin's access token",
            credential: demoted_token,
            role_now: Some("viewer"),
            session: false,
            signed_token: true,
        },
    ];
    let probes = probes(&named, &w);
    let mut checked = 0;
    for probe in probes
        .iter()
        .filter(|probe| probe.scopes.is_some() || probe.operator)
    {
        for credential in &ended {
            let (status, body) = send(app, probe, Some(&credential.credential)).await;
            let what = format!("{} with {}", probe.what(), credential.what);
            if probe.operator {
                assert!(
                    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                    "{what}: {status} {body}"
                );
                continue;
            }
            checked += 1;
            if probe.data_plane && credential.signed_token {
                assert!(
                    !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                    "{what}: the data plane trusts the token's signature, yet {status} {body}"
                );
                continue;
            }
            if probe.session_only {
                match credential.role_now {
                    None => assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}"),
                    // Any role acts on its own account (a session named in the path
                    // is another member's: not found).
                    Some(_) if credential.session => assert!(
                        status.is_success() || status == StatusCode::NOT_FOUND,
                        "{what}: {status} {body}"
                    ),
                    Some(_) => assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}"),
                }
                continue;
            }
            let scopes = probe.scopes.as_deref().unwrap_or_default();
            match credential.role_now {
                None => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                    assert_eq!(error_code(&body), "unauthorized", "{what}");
                }
                Some(_viewer) if scopes.iter().any(|s| s == "write" || s == "admin") => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
                    assert_eq!(error_code(&body), "forbidden", "{what}");
                }
                // Only a key itself is exchanged for a token.
                Some(_viewer)
                    if status == StatusCode::UNAUTHORIZED
                        && !credential.credential.starts_with("sxt_key_") =>
                {
                    assert_eq!(error_code(&body), "api_key_required", "{what}");
                }
                Some(_viewer) => assert!(
                    status.is_success() || status.is_redirection(),
                    "{what}: {status} {body}"
                ),
            }
        }
    }
    eprintln!(
        "swept {} operations with {} ended grants: {checked} answers checked",
        probes.len(),
        ended.len()
    );

    // The team is as it was: no key, invite or member came of the ended grants.
    let (_, keys) = app.get("/v1/api-keys", &w.a.api_key).await;
    let names: Vec<&str> = keys["api_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key["name"].as_str())
        .collect();
    assert!(!names.contains(&"swept"), "{names:?}");
    let (_, invites) = app.get("/v1/invites", &w.a.api_key).await;
    assert!(
        !invites.to_string().contains("swept@example.com"),
        "{invites}"
    );
    let (_, members) = app.get("/v1/members", &w.a.api_key).await;
    assert!(!members.to_string().contains(&removed), "{members}");
    assert!(members.to_string().contains("\"viewer\""), "{members}");
}

/// Walks every documented operation with the credential an agent hands a job's
/// command: it acts on its own run through the operations marked `x-sextant-job`, and
/// is refused (403) by every other operation and on every other run.
#[tokio::test]
async fn a_jobs_credential_reaches_its_run_and_nothing_else_on_every_documented_operation() {
    let w = world(TestApp::spawn().await).await;
    let named = one_of_everything(&w).await;
    let (status, claimed) = w
        .app
        .post(
            &format!("/v1/projects/{}/queues/default/claim", named.project),
            &w.a.api_key,
            json!({"agent": "sweeper"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(text(&claimed, "run_id"), named.job);
    let job_token = text(&claimed, "job_token");
    assert_ne!(job_token, w.a.api_key);

    let (mut allowed, mut refused) = (0, 0);
    for probe in probes(&named, &w) {
        if probe.scopes.is_none() && !probe.operator {
            continue;
        }
        let (status, body) = send(&w.app, &probe, Some(&job_token)).await;
        let what = format!("{} with a job's credential", probe.what());
        if probe.operator {
            assert!(
                matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{what}: {status} {body}"
            );
            continue;
        }
        // Another run than the job's, or no run at all: refused. Only a key is
        // exchanged for a token, which tells the SDK to use the credential as it is.
        if probe.template == "/v1/auth/token" {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            assert_eq!(error_code(&body), "api_key_required", "{what}");
            continue;
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
        assert_eq!(error_code(&body), "forbidden", "{what}");
        refused += 1;
        if probe.for_jobs {
            let own = Probe {
                path: probe.path.replace(&named.run, &named.job),
                ..probe
            };
            let (status, body) = send(&w.app, &own, Some(&job_token)).await;
            assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{} on the job's own run: {status} {body}",
                own.what()
            );
            allowed += 1;
        }
    }
    eprintln!("a job's credential: {allowed} operations on its run, {refused} refusals");
    assert!(
        allowed >= 7,
        "only {allowed} operations take a job's credential"
    );

    // Once the job is done, its credential is refused beyond the data plane.
    let (status, body) = w
        .app
        .post(
            &format!("/v1/jobs/{}/finish", named.job),
            &w.a.api_key,
            json!({"attempt": text_u64(&claimed, "attempts"), "exit_code": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = w
        .app
        .get(&format!("/v1/runs/{}", named.job), &job_token)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

fn text_u64(body: &Value, field: &str) -> u64 {
    body[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {field:?} in {body}"))
}
