//! Tenancy and roles on every endpoint: another team's resources answer 404 exactly
//! as missing ones do, lists never show them, and a viewer's writes answer 403.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sextant_tests::{Team, TestApp, error_code, text, unique};

/// Team A with one of everything, and team B, whose admin probes A's ids.
struct World {
    app: TestApp,
    a: Team,
    b: Team,
    a_key_id: String,
    a_invite_id: String,
    a_member_id: String,
    a_project_id: String,
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
        app,
        a,
        b,
    }
}

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
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
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

#[tokio::test]
async fn another_teams_resources_answer_404_on_dynamodb() {
    another_teams_resources_answer_404(TestApp::spawn_on_aws().await).await;
}

#[tokio::test]
async fn lists_show_only_the_callers_team_on_the_embedded_store() {
    lists_show_only_the_callers_team(TestApp::spawn().await).await;
}

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
