//! The web pages over real HTTP, as a browser uses them: a client that keeps cookies
//! and does not follow redirects (so each 303 is seen), forms filled from the pages
//! themselves (their CSRF field included), and the HTML read with CSS selectors.

use std::sync::Arc;

use reqwest::header;
use reqwest::{Method, StatusCode, redirect};
use serde_json::{Value, json};
use sextant_domain::billing;
use sextant_domain::calendar::{self, BillingMonth};
use sextant_domain::credentials::jwt::Keyring;

use sextant_edge::state::{AppState, Settings};
use sextant_storage::Storage;
use sextant_storage::clock::ManualClock;
use sextant_storage_local::EmbeddedKv;
use sextant_tests::browser::{Browser, Page, logged_in};
use sextant_tests::{PNG, TestApp, local_blobs_with_routes, text, unique};

const SCRIPT: &str = "<script>alert(1)</script>";
const ESCAPED_SCRIPT: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// Signs a new team up through the form; answers the signed-in browser, the page it
/// got, and the e-mail and password.
async fn sign_up(base: &str) -> (Browser, Page, String, String) {
    let browser = Browser::new(base);
    let email = format!("{}@example.com", unique("page"));
    let password = "correct horse battery staple".to_owned();
    let page = browser
        .submit(
            "/signup",
            "form#signup",
            &[
                ("team", "Whale Watchers"),
                ("email", &email),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    (browser, page, email, password)
}

/// A run with params, tags, two `loss` series with a spike and a dip among many
/// points, 80 lines of text, an image and an artifact.
async fn logged_run(app: &TestApp, key: &str, project: &str, name: &str) -> String {
    let run = text(
        &app.create_run(
            key,
            project,
            json!({"name": name, "tags": ["baseline", "gpu"],
                   "params": {"lr": 0.0003, "optimizer": {"name": "adam"}}}),
        )
        .await,
        "id",
    );
    let steps: Vec<i64> = (0..20_000).collect();
    let train: Vec<f64> = steps
        .iter()
        .map(|&step| match step {
            12_345 => 1000.0,
            777 => -3.0,
            _ => 0.5 + (step % 7) as f64 / 100.0,
        })
        .collect();
    let val: Vec<f64> = steps
        .iter()
        .map(|&step| 1.0 / (step as f64 + 1.0))
        .collect();
    let lines: Vec<Value> = (0..80)
        .map(|i| json!({"step": i, "text": format!("line {i}")}))
        .collect();
    app.log_ok(
        key,
        &run,
        json!({
            "batch_id": unique("batch"),
            "series": {
                "train/loss": {"steps": steps, "values": train},
                "val/loss": {"steps": steps, "values": val},
                "lr": {"steps": [0, 1], "values": [0.0003, 0.0002]},
            },
            "text": {"stdout": lines},
        }),
    )
    .await;
    let (status, body) = app
        .post_image(key, &run, "series=samples&step=3", PNG)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.store_artifact(key, &run, "checkpoints/last model.pt", b"weights", None)
        .await;
    run
}

async fn run_json(app: &TestApp, key: &str, run: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/runs/{run}"), key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn the_landing_page_links_to_sign_up_and_log_in_and_sends_members_to_their_projects() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app.base);
    let landing = browser.get("/").await;
    assert_eq!(landing.status, StatusCode::OK);
    assert_eq!(landing.attr("a#signup-link", "href"), "/signup");
    assert_eq!(landing.attr("a#login-link", "href"), "/login");
    assert_eq!(landing.count("form#logout"), 0);

    let team = app.signup().await;
    let browser = logged_in(&app, &team).await;
    assert_eq!(browser.get("/").await.location(), "/projects");
}

#[tokio::test]
async fn signing_up_through_the_form_shows_the_first_api_key_once_and_signs_the_team_in() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app.base);
    let form = browser.get("/signup").await;
    assert_eq!(form.attr("form#signup", "action"), "/signup");
    for field in ["team", "email", "password"] {
        assert_eq!(form.count(&format!("form#signup input[name={field}]")), 1);
    }
    assert_eq!(form.attr("form#signup input[name=csrf]", "type"), "hidden");
    assert_eq!(form.count("form#signup button[type=submit]"), 1);

    let (browser, welcome, email, _) = sign_up(&app.base).await;
    let key = welcome.text("code#api-key");
    assert!(key.starts_with("sxt_key_"), "{key}");
    let snippet = welcome.text("pre#sdk-snippet");
    assert!(snippet.contains("import sextant"), "{snippet}");
    assert!(snippet.contains(&key), "{snippet}");
    assert!(snippet.contains(&app.base), "{snippet}");
    assert_eq!(welcome.attr("a#continue", "href"), "/projects");
    assert_eq!(welcome.count("form#logout"), 1);
    assert!(welcome.header(header::CACHE_CONTROL).contains("no-store"));

    // The key works with the API, for the member who signed up.
    let (status, me) = app.get("/v1/me", &key).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/login",
            None,
            Some(json!({"email": email, "password": "correct horse battery staple"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let session = welcome.set_cookie("sextant_session");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    let csrf = welcome.set_cookie("sextant_csrf");
    assert!(
        csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"),
        "{csrf}"
    );

    let projects = browser.get("/projects").await;
    assert_eq!(projects.status, StatusCode::OK, "{}", projects.body);
    assert_eq!(projects.text("header .team"), "Whale Watchers");
}

#[tokio::test]
async fn sign_up_errors_re_render_the_form_with_a_message_and_a_4xx() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app.base);
    let weak = browser
        .submit(
            "/signup",
            "form#signup",
            &[
                ("team", "T"),
                ("email", "a@example.com"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert!(weak.text("p.error").contains("12"), "{}", weak.body);
    assert_eq!(
        weak.attr("form#signup input[name=email]", "value"),
        "a@example.com"
    );
    assert_eq!(weak.count("code#api-key"), 0);

    let team = app.signup().await;
    let taken = browser
        .submit(
            "/signup",
            "form#signup",
            &[
                ("team", "T"),
                ("email", &team.email),
                ("password", "long enough password"),
            ],
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.count("p.error"), 1);
    assert!(browser.cookie("sextant_session").is_none());
}

#[tokio::test]
async fn logging_in_and_out_through_the_forms_sets_and_clears_the_session_cookie() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let browser = Browser::new(&app.base);

    let wrong = browser
        .submit(
            "/login",
            "form#login",
            &[("email", &team.email), ("password", "not the password")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.count("p.error"), 1);
    assert!(browser.cookie("sextant_session").is_none());

    let ok = browser
        .submit(
            "/login",
            "form#login",
            &[("email", &team.email), ("password", &team.password)],
        )
        .await;
    assert_eq!(ok.location(), "/projects");
    let session = ok.set_cookie("sextant_session");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
    assert!(browser.cookie("sextant_session").is_some());
    let projects = browser.get("/projects").await;
    assert_eq!(projects.status, StatusCode::OK);
    let token = browser.cookie("sextant_session").expect("a session");
    assert_eq!(app.get("/v1/me", &token).await.0, StatusCode::OK);

    let out = browser.submit_on(&projects, "form#logout", &[]).await;
    assert_eq!(out.location(), "/");
    assert!(out.set_cookie("sextant_session").contains("Max-Age=0"));
    assert!(browser.cookie("sextant_session").is_none());
    assert_eq!(browser.get("/projects").await.location(), "/login");
    // The session itself is over, not only the cookie: a copy of the token is refused.
    assert_eq!(app.get("/v1/me", &token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn over_https_the_cookies_are_secure_and_bound_to_the_host() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    // A browser that came over HTTPS, as the proxy in front says; by hand, since a
    // cookie jar keeps no `Secure` cookie of a plain-HTTP test server.
    let client = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("a client");
    let https = |request: reqwest::RequestBuilder| request.header("x-forwarded-proto", "https");
    let form = https(client.get(format!("{}/login", app.base)))
        .send()
        .await
        .unwrap();
    let form = Page {
        status: form.status(),
        headers: form.headers().clone(),
        body: form.text().await.unwrap(),
    };
    let csrf_cookie = form.set_cookie("__Host-sextant_csrf");
    assert!(
        form.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|value| { !value.to_str().unwrap().starts_with("sextant_") })
    );
    let csrf = form.attr("form#login input[name=csrf]", "value");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf.as_str()),
            ("email", &team.email),
            ("password", &team.password),
        ])
        .finish();
    let cookie_value = csrf_cookie.split(';').next().unwrap().to_owned();
    let login = |cookie: String| {
        https(client.post(format!("{}/login", app.base)))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .body(body.clone())
            .send()
    };
    // The plain name, which a sibling subdomain could have set, is not the CSRF cookie
    // over HTTPS.
    let planted = login(cookie_value.replace("__Host-", "")).await.unwrap();
    assert_eq!(planted.status(), StatusCode::FORBIDDEN);
    let response = login(cookie_value).await.unwrap();
    let response = Page {
        status: response.status(),
        headers: response.headers().clone(),
        body: String::new(),
    };
    assert_eq!(response.location(), "/projects");
    for name in ["__Host-sextant_session", "__Host-sextant_csrf"] {
        let cookie = response.set_cookie(name);
        assert!(cookie.contains("; Secure"), "{cookie}");
        assert!(cookie.contains("; Path=/"), "{cookie}");
        assert!(!cookie.to_lowercase().contains("domain="), "{cookie}");
    }
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_or_from_another_origin_are_refused() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let browser = logged_in(&app, &team).await;
    let projects = browser.get("/projects").await;
    let csrf = projects.attr("form#new-project input[name=csrf]", "value");

    let missing = browser.post("/projects", &[("name", "missing")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.body);
    let wrong = browser
        .post(
            "/projects",
            &[("name", "wrong"), ("csrf", "AAAAAAAAAAAAAAAA")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.count("p.error"), 1);
    let foreign = browser
        .send(
            browser
                .form_request("/projects", &[("name", "foreign"), ("csrf", &csrf)])
                .header(header::ORIGIN, "https://evil.example"),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let null = browser
        .send(
            browser
                .form_request("/projects", &[("name", "null-origin"), ("csrf", &csrf)])
                .header(header::ORIGIN, "null"),
        )
        .await;
    assert_eq!(null.status, StatusCode::FORBIDDEN);

    // The token is bound to this browser's CSRF cookie: another browser's is no use.
    let other = logged_in(&app, &team).await;
    let stolen = other
        .post("/projects", &[("name", "stolen"), ("csrf", &csrf)])
        .await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN);
    // Logging out needs the token too.
    assert_eq!(
        browser.post("/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let login = Browser::new(&app.base)
        .post(
            "/login",
            &[("email", &team.email), ("password", &team.password)],
        )
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);

    let (_, listed) = app.get("/v1/projects", &team.api_key).await;
    assert_eq!(listed["projects"], json!([]), "nothing was created");

    // Same origin, valid token: it works.
    let own = browser
        .send(
            browser
                .form_request("/projects", &[("name", "mine"), ("csrf", &csrf)])
                .header(header::ORIGIN, app.base.as_str()),
        )
        .await;
    assert_eq!(own.location(), "/projects/mine");
}

#[tokio::test]
async fn pages_that_need_a_member_redirect_to_log_in_when_logged_out() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let browser = Browser::new(&app.base);
    for path in [
        "/projects".to_owned(),
        "/projects/anything".to_owned(),
        format!("/runs/{run}"),
        format!("/points?line={run}::loss"),
        format!("/compare?run={run}"),
        "/projects/anything/workspace".to_owned(),
        "/settings/keys".to_owned(),
        "/usage".to_owned(),
        "/usage/reports/2026-01.csv".to_owned(),
    ] {
        assert_eq!(browser.get(&path).await.location(), "/login", "{path}");
    }
    // A form sent logged out changes nothing either.
    let login = browser.get("/login").await;
    let csrf = login.attr("form#login input[name=csrf]", "value");
    let abort = browser
        .post(&format!("/runs/{run}/abort"), &[("csrf", &csrf)])
        .await;
    assert_eq!(abort.location(), "/login");
    assert_eq!(
        run_json(&app, &team.api_key, &run).await["abort_requested"],
        false
    );
}

#[tokio::test]
async fn the_session_cookie_never_authenticates_the_json_api_nor_an_api_key_the_pages() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let browser = logged_in(&app, &team).await;
    let session = browser.cookie("sextant_session").unwrap();
    let api = browser.get("/v1/projects").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.body);
    let response = app
        .client
        .get(app.url("/v1/projects"))
        .header(header::COOKIE, format!("sextant_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let keyed = Browser::new(&app.base);
    keyed.set_cookie("sextant_session", &team.api_key);
    assert_eq!(keyed.get("/projects").await.location(), "/login");
    keyed.set_cookie("sextant_session", "not-a-token");
    assert_eq!(keyed.get("/projects").await.location(), "/login");
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_the_script_is_cached_by_version() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let browser = logged_in(&app, &team).await;
    for path in [
        "/",
        "/login",
        "/signup",
        "/projects",
        "/settings/keys",
        "/usage",
    ] {
        let page = browser.get(path).await;
        if page.status == StatusCode::SEE_OTHER {
            continue;
        }
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let csp = page.header(header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "img-src 'self' data: https:",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(page.header(header::REFERRER_POLICY), "same-origin");
        assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
        assert_eq!(
            page.count("script:not([src])"),
            0,
            "{path}: no inline script"
        );
        assert_eq!(page.count("[style]"), 0, "{path}: no inline style");
    }
    let page = browser.get("/projects").await;
    let script = page.attr("script[src]", "src");
    assert!(script.starts_with("/static/app.js?v="), "{script}");
    let js = browser.get(&script).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.header(header::CONTENT_TYPE).contains("javascript"));
    assert!(
        js.header(header::CACHE_CONTROL)
            .contains("max-age=31536000")
    );
    let css = browser
        .get(&page.attr("link[rel=stylesheet]", "href"))
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header(header::CONTENT_TYPE).starts_with("text/css"));
}

#[tokio::test]
async fn projects_are_created_and_listed_through_the_forms() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let browser = logged_in(&app, &team).await;
    let created = browser
        .submit("/projects", "form#new-project", &[("name", "whales")])
        .await;
    assert_eq!(created.location(), "/projects/whales");
    let project = browser.get("/projects/whales").await;
    assert_eq!(project.status, StatusCode::OK);
    assert_eq!(project.text("h1"), "whales");
    assert_eq!(project.count("table#runs tbody tr"), 0);

    let list = browser.get("/projects").await;
    assert_eq!(list.attrs("a.project", "href"), vec!["/projects/whales"]);
    let again = browser
        .submit("/projects", "form#new-project", &[("name", "whales")])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.count("p.error"), 1);
    let bad = browser
        .submit("/projects", "form#new-project", &[("name", "no spaces")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Another team's project is not there.
    let other = app.signup().await;
    app.create_project(&other.api_key, "secret-project").await;
    assert_eq!(
        browser.get("/projects/secret-project").await.status,
        StatusCode::NOT_FOUND
    );
}

fn row_ids(page: &Page) -> Vec<String> {
    page.attrs("table#runs tbody tr", "data-run-id")
}

#[tokio::test]
async fn the_run_table_filters_by_tag_status_and_name_and_sorts_by_metric_and_param_columns() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "table").await;
    let mut ids = Vec::new();
    for (name, lr, loss, tag) in [
        ("alpha", 0.1, 0.3, "keep"),
        ("beta", 0.3, 0.1, "keep"),
        ("gamma", 0.2, 0.2, "drop"),
    ] {
        let run = text(
            &app.create_run(
                key,
                "table",
                json!({"name": name, "params": {"lr": lr}, "tags": [tag]}),
            )
            .await,
            "id",
        );
        app.log_ok(
            key,
            &run,
            json!({"batch_id": unique("b"), "series": {"loss": {"steps": [1], "values": [loss]}}}),
        )
        .await;
        ids.push(run);
    }
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/v1/runs/{}", ids[2]),
            Some(key),
            Some(json!({"status": "failed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let browser = logged_in(&app, &team).await;

    let table = browser.get("/projects/table").await;
    assert_eq!(table.status, StatusCode::OK, "{}", table.body);
    // Newest first by default.
    assert_eq!(
        row_ids(&table),
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    for id in &ids {
        assert_eq!(
            table.attr(&format!("tr[data-run-id={id}] a.run-link"), "href"),
            format!("/runs/{id}")
        );
        assert_eq!(
            table.count(&format!("form#compare input[name=run][value={id}]")),
            1
        );
    }
    assert_eq!(table.attr("form#compare", "action"), "/compare");
    assert_eq!(table.attr("form#filter", "method").to_lowercase(), "get");
    let metric_sort = table.attr("th.metric a.sort", "href");
    assert!(metric_sort.contains("sort=metric%3Aloss"), "{metric_sort}");
    let param_sort = table.attr("th.param a.sort", "href");
    assert!(param_sort.contains("sort=param%3Alr"), "{param_sort}");

    let by_loss = browser
        .get("/projects/table?sort=metric:loss&order=asc")
        .await;
    assert_eq!(
        row_ids(&by_loss),
        vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]
    );
    let by_lr = browser
        .get(&format!(
            "/projects/table?{}",
            param_sort.split_once('?').unwrap().1
        ))
        .await;
    assert_eq!(
        row_ids(&by_lr),
        vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]
    );
    let by_name = browser.get("/projects/table?sort=name&order=desc").await;
    assert_eq!(
        row_ids(&by_name),
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );

    let tagged = browser.get("/projects/table?tag=keep&status=&name=").await;
    assert_eq!(row_ids(&tagged), vec![ids[1].clone(), ids[0].clone()]);
    // Each run's cost, and what the runs the filter keeps cost together.
    assert_eq!(tagged.texts("td.cost"), vec!["0.00 USD", "0.00 USD"]);
    let filtered = tagged.text("#filtered-cost");
    assert!(
        filtered.starts_with("cost so far 0.00 USD (2 points, "),
        "{filtered}"
    );
    let all = table.text("#filtered-cost");
    assert!(all.starts_with("cost so far 0.00 USD (3 points, "), "{all}");
    let failed = browser.get("/projects/table?status=failed").await;
    assert_eq!(row_ids(&failed), vec![ids[2].clone()]);
    let named = browser.get("/projects/table?name=ALP").await;
    assert_eq!(row_ids(&named), vec![ids[0].clone()]);
    let sorted_and_filtered = browser
        .get("/projects/table?tag=keep&sort=metric:loss&order=desc")
        .await;
    assert_eq!(
        row_ids(&sorted_and_filtered),
        vec![ids[0].clone(), ids[1].clone()]
    );

    let bad = browser.get("/projects/table?sort=bogus").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_run_page_shows_a_logged_run_with_charts_that_keep_its_spikes() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "vision").await;
    let run = logged_run(&app, key, "vision", "resnet-50").await;
    let browser = logged_in(&app, &team).await;

    let page = browser.get(&format!("/runs/{run}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.text("h1"), "resnet-50");
    assert_eq!(page.text("#run-status"), "running");
    let usage = run_json(&app, key, &run).await["usage"].clone();
    let logged = usage["points"].as_u64().unwrap();
    assert_eq!(
        page.text("#run-points").replace(',', ""),
        format!("{logged} points")
    );
    assert!(page.text("#run-bytes").ends_with(" KB"), "{}", page.body);
    // 40,083 points at $0.50 a million.
    assert_eq!(page.text("#run-cost"), "0.02 USD");
    assert_eq!(usage["cost"], "0.02");
    assert_eq!(page.texts("#tags li"), vec!["baseline", "gpu"]);
    let params = page.texts("table#params tbody th");
    assert_eq!(params, vec!["lr", "optimizer/name"]);
    assert_eq!(page.texts("table#params tbody td"), vec!["0.0003", "adam"]);
    assert!(page.body.contains(&run), "the id is shown");

    // train/loss and val/loss share a chart; lr has its own.
    assert_eq!(page.count("#charts figure.chart"), 2);
    assert_eq!(
        page.texts("#charts figure.chart > figcaption"),
        vec!["loss", "lr"]
    );
    let spec = page.chart_spec();
    assert_eq!(spec["mode"], "run");
    assert_eq!(spec["source"], "/points");
    assert_eq!(spec["live"], true, "a running run's charts keep reading");
    assert_eq!(
        spec["charts"][0]["series"],
        json!(["train/loss", "val/loss"])
    );
    assert_eq!(spec["runs"][0]["id"], run.as_str());
    // What the charts read: each line downsampled with its extremes kept.
    let points = browser
        .get(&format!(
            "/points?line={run}::train/loss&line={run}::val/loss&max_points=200"
        ))
        .await;
    assert_eq!(points.status, StatusCode::OK, "{}", points.body);
    let points = points.json();
    let extremes = |line: &Value| {
        let values: Vec<f64> = line["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_f64().unwrap())
            .collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max, values.len())
    };
    let (min, max, drawn) = extremes(&points["lines"][0]);
    assert_eq!(
        (min, max),
        (-3.0, 1000.0),
        "the spike and the dip survive downsampling"
    );
    assert!(drawn <= 200, "{drawn} points");
    assert_eq!(points["lines"][0]["downsampled"], true);
    assert_eq!(points["lines"][0]["status"], "running");
    assert_eq!(extremes(&points["lines"][1]).1, 1.0);
    let last = points["lines"][0]["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let tail = page.text("pre.log");
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 50, "{tail}");
    assert_eq!(lines[0], "30 line 30");
    assert_eq!(lines[49], "79 line 79");

    let image = page.attr("#images img", "src");
    let fetched = app.client.get(&image).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), PNG);

    let artifact = page.attr("a.artifact", "href");
    assert_eq!(
        artifact,
        format!("/runs/{run}/artifacts/checkpoints/last%20model.pt")
    );
    let download = browser.get(&artifact).await;
    assert_eq!(download.status, StatusCode::TEMPORARY_REDIRECT);
    let bytes = app
        .client
        .get(download.header(header::LOCATION))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), b"weights");
    assert_eq!(page.count("#lineage"), 1);
    assert_eq!(page.count("form#abort"), 1);
    assert_eq!(page.count("form#share"), 1);

    // A live chart asks only for the points after the last step it shows.
    app.log_ok(key,
        &run,
        json!({"batch_id": unique("b"), "series": {"train/loss": {"steps": [20_000], "values": [2000.0]}}}),
    )
    .await;
    let fresher = browser
        .get(&format!("/points?line={run}:{last}:train/loss"))
        .await
        .json();
    // The overview's last bucket ends at its extremes; everything after them is new.
    let steps = fresher["lines"][0]["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|step| step.as_i64() > last.as_i64()),
        "{steps:?}"
    );
    assert_eq!(steps.last(), Some(&json!(20_000)));
    assert_eq!(
        fresher["lines"][0]["values"].as_array().unwrap().last(),
        Some(&json!(2000))
    );

    // Another team's run is not there.
    let other = app.signup().await;
    let theirs = app.new_run(&other.api_key).await;
    assert_eq!(
        browser.get(&format!("/runs/{theirs}")).await.status,
        StatusCode::NOT_FOUND
    );
    let foreign = browser.get(&format!("/points?line={theirs}::loss")).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.json()["error"]["code"], "not_found");
    let mixed = browser
        .get(&format!(
            "/points?line={run}::train/loss&line={theirs}::loss"
        ))
        .await;
    assert_eq!(
        mixed.status,
        StatusCode::NOT_FOUND,
        "one foreign line fails the read"
    );
    assert_eq!(
        browser.get("/runs/not-a-run").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn aborting_through_the_form_asks_the_run_to_stop() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let browser = logged_in(&app, &team).await;
    let aborted = browser
        .submit(&format!("/runs/{run}"), "form#abort", &[])
        .await;
    assert_eq!(aborted.location(), format!("/runs/{run}"));
    assert_eq!(
        run_json(&app, &team.api_key, &run).await["abort_requested"],
        true
    );
    let page = browser.get(&format!("/runs/{run}")).await;
    assert_eq!(page.count("form#abort"), 0);
    assert_eq!(page.count("#abort-requested"), 1);

    // A last batch, then the client confirms: the run has ended, its charts stop
    // refreshing.
    app.log_ok(
        &team.api_key,
        &run,
        json!({"batch_id": unique("b"), "series": {"loss": {"steps": [1], "values": [0.5]}}}),
    )
    .await;
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/v1/runs/{run}"),
            Some(&team.api_key),
            Some(json!({"status": "aborted"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ended = browser.get(&format!("/runs/{run}")).await;
    assert_eq!(ended.text("#run-status"), "aborted");
    assert_eq!(ended.chart_spec()["live"], false);
    assert_eq!(ended.count("form#abort"), 0);

    // A queued run is aborted at once.
    let project = unique("project");
    app.create_project(&team.api_key, &project).await;
    let queued = text(
        &app.create_run(&team.api_key, &project, json!({"status": "queued"}))
            .await,
        "id",
    );
    browser
        .submit(&format!("/runs/{queued}"), "form#abort", &[])
        .await;
    assert_eq!(
        browser
            .get(&format!("/runs/{queued}"))
            .await
            .text("#run-status"),
        "aborted"
    );
}

#[tokio::test]
async fn a_viewer_sees_runs_but_no_forms_that_change_them_and_cannot_manage_keys() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    let (_, token) = app.add_member(&team, "viewer").await;
    let viewer = Browser::new(&app.base);
    viewer.set_cookie("sextant_session", &token);
    let page = viewer.get(&format!("/runs/{run}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.count("form#abort"), 0);
    assert_eq!(page.count("form#share"), 0);
    let csrf = page.attr("form#logout input[name=csrf]", "value");
    let abort = viewer
        .post(&format!("/runs/{run}/abort"), &[("csrf", &csrf)])
        .await;
    assert_eq!(abort.status, StatusCode::FORBIDDEN);
    assert_eq!(
        run_json(&app, &team.api_key, &run).await["abort_requested"],
        false
    );
    assert_eq!(
        viewer.get("/settings/keys").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn sharing_through_the_form_gives_a_link_that_opens_the_run_logged_out_until_revoked() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "secret-project").await;
    let run = logged_run(&app, key, "secret-project", "shared-run").await;
    let sibling = text(
        &app.create_run(key, "secret-project", json!({"name": "sibling-run"}))
            .await,
        "id",
    );
    let browser = logged_in(&app, &team).await;

    let run_page = browser.get(&format!("/runs/{run}")).await;
    let options = run_page.attrs("form#share select[name=expires_in] option", "value");
    assert!(options.contains(&"7".to_owned()), "{options:?}");
    let shared = browser
        .submit_on(&run_page, "form#share", &[("expires_in", "7")])
        .await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.body);
    let url = shared.attr("input#share-url", "value");
    assert!(
        url.starts_with(&format!("{}/r/sxt_share_", app.base)),
        "{url}"
    );
    let path = url.strip_prefix(&app.base).unwrap().to_owned();

    // Logged out, with nothing but the link.
    let stranger = Browser::new(&app.base);
    let page = stranger.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.header(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(page.header(header::CACHE_CONTROL), "no-store");
    assert!(
        page.header(header::CONTENT_SECURITY_POLICY)
            .contains("default-src 'self'")
    );
    assert_eq!(page.text("h1"), "shared-run");
    assert_eq!(page.text("#run-status"), "running");
    assert_eq!(page.count("table#params tbody tr"), 2);
    assert_eq!(page.count("figure.chart"), 2);
    assert_eq!(page.count("pre.log"), 1);
    assert_eq!(page.count("#images img"), 1);
    assert_eq!(page.count("form"), 0, "no forms at all");
    assert_eq!(
        page.count("#run-cost"),
        0,
        "what it cost is the team's business"
    );
    assert_eq!(page.count("a.artifact"), 0, "downloads were not allowed");
    assert!(
        page.body.contains("checkpoints/last model.pt"),
        "the list is shown"
    );
    for hidden in [
        "Whale Watchers",
        "secret-project",
        "sibling-run",
        &sibling,
        "/projects",
    ] {
        assert!(
            !page.body.contains(hidden),
            "{hidden} leaked: {}",
            page.body
        );
    }
    assert_eq!(page.count("#lineage"), 0);
    let spec = page.chart_spec();
    assert_eq!(spec["source"], format!("{path}/points"));
    let points = stranger
        .get(&format!("{path}/points?line={run}::train/loss"))
        .await;
    assert_eq!(points.status, StatusCode::OK, "{}", points.body);
    assert_eq!(points.header(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(points.header(header::CACHE_CONTROL), "no-store");
    assert!(
        !points.json()["lines"][0]["values"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The share opens its run's series and nothing else, even of its own team.
    let sibling_points = stranger
        .get(&format!("{path}/points?line={sibling}::loss"))
        .await;
    assert_eq!(sibling_points.status, StatusCode::NOT_FOUND);
    let without_share = stranger
        .get(&format!("/points?line={run}::train/loss"))
        .await;
    assert_eq!(without_share.location(), "/login");

    // A share that allows downloads links them.
    let run_page = browser.get(&format!("/runs/{run}")).await;
    let with_downloads = browser
        .submit_on(
            &run_page,
            "form#share",
            &[("expires_in", "1"), ("allow_downloads", "true")],
        )
        .await;
    let open_path = with_downloads
        .attr("input#share-url", "value")
        .strip_prefix(&app.base)
        .unwrap()
        .to_owned();
    let open = stranger.get(&open_path).await;
    let link = open.attr("a.artifact", "href");
    assert!(link.starts_with("/v1/shared/sxt_share_"), "{link}");
    assert_eq!(
        stranger.get(&link).await.status,
        StatusCode::TEMPORARY_REDIRECT
    );

    // Revoking the first share through the run page closes it at once.
    let run_page = browser.get(&format!("/runs/{run}")).await;
    assert_eq!(run_page.count("form.revoke-share"), 2);
    let revoked = browser
        .submit_on(&run_page, "form.revoke-share", &[("run", &run)])
        .await;
    assert_eq!(revoked.location(), format!("/runs/{run}"));
    let statuses = [
        stranger.get(&path).await.status,
        stranger.get(&open_path).await.status,
    ];
    // Shares list oldest first: the first one is gone, the second still opens.
    assert_eq!(statuses, [StatusCode::NOT_FOUND, StatusCode::OK]);
    let gone = stranger.get(&path).await;
    assert!(gone.header(header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(gone.header(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(
        stranger.get("/r/sxt_share_nonsense").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_compare_page_overlays_each_metric_and_marks_differing_params() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "cmp").await;
    let mut ids = Vec::new();
    for (name, lr) in [("small-lr", 0.001), ("large-lr", 0.1)] {
        let run = text(
            &app.create_run(
                key,
                "cmp",
                json!({"name": name, "params": {"lr": lr, "seed": 7}}),
            )
            .await,
            "id",
        );
        app.log_ok(key,
            &run,
            json!({"batch_id": unique("b"), "series": {"loss": {"steps": [0, 1, 2], "values": [lr, 1.0, 0.5]}}}),
        )
        .await;
        ids.push(run);
    }
    let browser = logged_in(&app, &team).await;
    // As the run table's compare form sends it.
    let table = browser.get("/projects/cmp").await;
    assert_eq!(table.attr("form#compare", "method").to_lowercase(), "get");
    let page = browser
        .get(&format!("/compare?run={}&run={}", ids[0], ids[1]))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.attrs("table#params tr.differs", "data-param"),
        vec!["lr"]
    );
    assert_eq!(page.count("table#params tbody tr"), 2);
    assert_eq!(page.count("figure.chart"), 1);
    let spec = page.chart_spec();
    assert_eq!(spec["mode"], "workspace", "a line a run");
    assert_eq!(spec["charts"][0]["series"], json!(["loss"]));
    let names: Vec<&str> = spec["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["small-lr", "large-lr"]);
    let points = browser
        .get(&format!("/points?line={}::loss", ids[1]))
        .await
        .json();
    assert_eq!(points["lines"][0]["values"], json!([0.1, 1, 0.5]));

    let none = browser.get("/compare").await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let other = app.signup().await;
    let theirs = app.new_run(&other.api_key).await;
    let foreign = browser
        .get(&format!("/compare?run={}&run={theirs}", ids[0]))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_keys_are_created_shown_once_and_revoked_through_the_keys_page() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let browser = logged_in(&app, &team).await;
    let page = browser.get("/settings/keys").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.count("form.revoke-key"), 1, "the sign-up key");

    let created = browser
        .submit_on(&page, "form#new-key", &[("name", "ci"), ("role", "viewer")])
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let secret = created.text("code#new-key-secret");
    let (status, me) = app.get("/v1/me", &secret).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "viewer");
    // Beside it, the same key as Neptune's client takes it.
    assert_eq!(
        created.text("code#new-key-neptune-token"),
        sextant_api::neptune::api_token(&app.base, &secret)
    );
    let listed = browser.get("/settings/keys").await;
    assert_eq!(listed.count("code#new-key-secret"), 0, "shown once");
    assert!(!listed.body.contains(&secret));
    assert_eq!(
        listed.count("code#new-key-neptune-token"),
        0,
        "shown once too"
    );
    assert_eq!(listed.count("form.revoke-key"), 2);

    let key_id = text(&me, "api_key_id");
    let revoke_form = format!("tr[data-key-id={key_id}] form.revoke-key");
    let revoked = browser.submit_on(&listed, &revoke_form, &[]).await;
    assert_eq!(revoked.location(), "/settings/keys");
    assert_eq!(app.get("/v1/me", &secret).await.0, StatusCode::UNAUTHORIZED);

    let bad = browser
        .submit(
            "/settings/keys",
            "form#new-key",
            &[("name", ""), ("role", "member")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.count("p.error"), 1);
}

/// An application whose state the test holds, on a clock it sets: to roll up hours
/// and close months as the metering schedule would.
struct MeteredApp {
    base: String,
    state: AppState,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn metered_app(start: time::OffsetDateTime) -> MeteredApp {
    sextant_domain::telemetry::init();
    let (blobs, dir) = local_blobs_with_routes().await;
    let kv = EmbeddedKv::open(&dir.path().join("store.redb")).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let keyring = Keyring::new(&[("test".to_owned(), vec![9; 32])]).unwrap();
    let clock = Arc::new(ManualClock::starting_at(start));
    let state = AppState::new(
        Storage {
            kv: Arc::new(kv),
            blobs,
        },
        keyring,
        Settings::new(Some(base.parse().unwrap())),
    )
    .with_clock(clock.clone());
    sextant_tests::serve_on(listener, state.clone());
    MeteredApp {
        base,
        state,
        clock,
        _dir: dir,
    }
}

#[tokio::test]
async fn the_usage_page_shows_this_month_so_far_and_past_reports_as_json_and_csv() {
    let february = time::macros::datetime!(2026-02-10 09:30 UTC);
    let app = metered_app(february).await;
    let client = reqwest::Client::new();
    let signup: Value = client
        .post(format!("{}/v1/signup", app.base))
        .json(&json!({"team": "Meters", "email": format!("{}@example.com", unique("u")), "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = text(&signup, "api_key");
    let post = |path: String, body: Value| {
        client
            .post(format!("{}{path}", app.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    assert!(
        post("/v1/projects".into(), json!({"name": "p"}))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let run: Value = post("/v1/projects/p/runs".into(), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = text(&run, "id");
    let log_points = |count: usize| {
        let steps: Vec<usize> = (0..count).collect();
        let values: Vec<f64> = steps.iter().map(|&s| s as f64).collect();
        post(
            format!("/v1/runs/{run}/log"),
            json!({"batch_id": unique("b"), "series": {format!("m{count}"): {"steps": steps, "values": values}}}),
        )
    };
    assert!(log_points(1_000).await.unwrap().status().is_success());
    sextant_cli::metering(&app.state)
        .roll_up_hour(calendar::hour_of(february))
        .await
        .unwrap();
    billing::close_month(
        &app.state.store,
        &app.state.settings.plan,
        BillingMonth::of(february),
    )
    .await
    .unwrap();

    let march = time::macros::datetime!(2026-03-05 14:10 UTC);
    app.clock.set(march);
    assert!(log_points(250).await.unwrap().status().is_success());
    sextant_cli::metering(&app.state)
        .roll_up_hour(calendar::hour_of(march))
        .await
        .unwrap();

    // Signed in with the session the sign-up answered.
    let browser = Browser::new(&app.base);
    browser.set_cookie("sextant_session", &text(&signup, "token"));

    let page = browser.get("/usage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.text("#usage-points"), "250");
    assert_eq!(page.text("#usage-total"), "0.00 USD");
    // Prices as the plan states them, and how much of the free allowance is used.
    let points_line = page.text("#points-line");
    assert!(
        points_line.contains("0.50 USD per million points")
            && points_line.contains("250 of 10,000,000 points"),
        "{points_line}"
    );
    let storage_line = page.text("#storage-line");
    assert!(
        storage_line.contains("0.10 USD per GB-month") && storage_line.contains("of 5 GB-months"),
        "{storage_line}"
    );
    assert_eq!(page.attrs("li.report", "data-month"), vec!["2026-02"]);
    let links = page.attrs("li.report a", "href");
    assert_eq!(
        links,
        vec!["/usage/reports/2026-02.json", "/usage/reports/2026-02.csv"]
    );

    let json_report = browser.get(&links[0]).await;
    assert_eq!(json_report.status, StatusCode::OK);
    let report: Value = serde_json::from_str(&json_report.body).unwrap();
    assert_eq!(report["status"], "closed");
    assert_eq!(report["points"], 1_000);
    let csv = browser.get(&links[1]).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header(header::CONTENT_TYPE).starts_with("text/csv"));
    assert!(csv.body.starts_with("month,status,"), "{}", csv.body);
    assert!(
        csv.body.contains("2026-02,closed,logged points,1000,"),
        "{}",
        csv.body
    );
    assert_eq!(
        browser.get("/usage/reports/2026-02.xml").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        browser.get("/usage/reports/garbage.csv").await.status,
        StatusCode::NOT_FOUND
    );
    // The API's own report endpoint takes bearer credentials only, not the cookie.
    assert_eq!(
        browser
            .get("/v1/billing/reports/2026-02?format=csv")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Points logged in an hour not rolled up yet show at once, marked provisional.
    app.clock.set(march + time::Duration::HOUR);
    assert!(log_points(50).await.unwrap().status().is_success());
    let page = browser.get("/usage").await;
    assert_eq!(page.text("#usage-points"), "300");
    let provisional = page.text("#usage-provisional");
    assert!(provisional.contains("50 points"), "{provisional}");
    // (No roll-up ran since February here: the last two days' storage is
    // provisional too.)
    assert!(page.count("table.days .badge") >= 1);
}

#[tokio::test]
async fn user_supplied_names_render_as_text_on_every_page_that_shows_them() {
    let app = TestApp::spawn().await;
    let email = format!("{}@example.com", unique("xss"));
    let (status, signup) = app
        .call(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"team": SCRIPT, "email": email, "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{signup}");
    let key = text(&signup, "api_key");
    // Project and series names cannot hold markup at all: they are refused.
    let (status, _) = app
        .post("/v1/projects", &key, json!({"name": SCRIPT}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.create_project(&key, "xss").await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = text(
            &app.create_run(
                &key,
                "xss",
                json!({"name": SCRIPT, "description": SCRIPT, "tags": [SCRIPT],
                       "params": {SCRIPT: SCRIPT}}),
            )
            .await,
            "id",
        );
        let (status, _) = app
            .post(
                &format!("/v1/runs/{run}/log"),
                &key,
                json!({"batch_id": unique("b"), "series": {SCRIPT: {"steps": [1], "values": [1.0]}}}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "series names refuse markup"
        );
        app.log_ok(
            &key,
            &run,
            json!({"batch_id": unique("b"), "series": {"loss": {"steps": [1], "values": [1.0]}},
                   "text": {"stdout": [{"step": 1, "text": SCRIPT}]}}),
        )
        .await;
        runs.push(run);
    }
    let (status, _) = app
        .post(
            "/v1/api-keys",
            &key,
            json!({"name": SCRIPT, "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, share) = app
        .post(&format!("/v1/runs/{}/shares", runs[0]), &key, json!({}))
        .await;
    let share_path = text(&share, "url")
        .strip_prefix(&app.base)
        .unwrap()
        .to_owned();

    let browser = Browser::new(&app.base);
    browser.set_cookie("sextant_session", &text(&signup, "token"));
    for path in [
        "/projects".to_owned(),
        "/projects/xss".to_owned(),
        format!("/runs/{}", runs[0]),
        format!("/compare?run={}&run={}", runs[0], runs[1]),
        "/settings/keys".to_owned(),
        "/usage".to_owned(),
        share_path,
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(
            !page.body.contains(SCRIPT),
            "{path} renders markup: {}",
            page.body
        );
        assert!(
            page.body.contains(ESCAPED_SCRIPT),
            "{path} shows the name as text"
        );
        // The charts' spec is a data block, never run; its `<` are escaped.
        assert_eq!(
            page.count("script:not([src]):not([type=\"application/json\"])"),
            0,
            "{path}"
        );
    }
    let run_page = browser.get(&format!("/runs/{}", runs[0])).await;
    assert_eq!(run_page.text("h1"), SCRIPT, "the name reads as text");
    assert_eq!(run_page.texts("#tags li"), vec![SCRIPT]);
    assert_eq!(run_page.text("table#params tbody th"), SCRIPT);
    assert!(run_page.text("pre.log").contains(SCRIPT));
    assert_eq!(
        run_page.chart_spec()["runs"][0]["name"],
        SCRIPT,
        "the charts read the name back exactly"
    );
}

#[tokio::test]
async fn a_run_logged_through_mlflow_shows_on_its_page_like_any_other() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let mlflow = |path: &str, body: Value| {
        let (app, key) = (&app, team.api_key.clone());
        let path = format!("/api/2.0/mlflow/{path}");
        async move {
            let (status, answer) = app.post(&path, &key, body).await;
            assert_eq!(status, StatusCode::OK, "{path}: {answer}");
            answer
        }
    };
    let created = mlflow("runs/create", json!({"run_name": "from-mlflow"})).await;
    let run = text(&created["run"]["info"], "run_id");
    mlflow(
        "runs/log-batch",
        json!({
            "run_id": run,
            "params": [{"key": "lr", "value": "1e-05"}],
            "tags": [{"key": "team", "value": "vision"}],
            "metrics": [{"key": "val/loss", "value": 0.5, "timestamp": 0, "step": 3}],
        }),
    )
    .await;
    let browser = logged_in(&app, &team).await;
    let page = browser.get(&format!("/runs/{run}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.text("h1").trim(), "from-mlflow");
    for shown in [
        "<th scope=\"row\">lr</th><td>0.00001</td>",
        "team=vision",
        "val/loss",
    ] {
        assert!(page.body.contains(shown), "{shown} on the run page");
    }
}

#[tokio::test]
async fn the_account_forms_verify_reset_change_and_end_sessions_and_each_needs_its_csrf_token() {
    let app = TestApp::spawn().await;
    let (browser, _, email, password) = sign_up(&app.base).await;
    // Every account form refuses a post without the browser's CSRF token, and changes
    // nothing.
    let other = logged_in_as(&app, &email, &password).await;
    let token = app.mailed_token(&email, "verify");
    for (path, fields) in [
        ("/verify", vec![("token", token.as_str())]),
        ("/forgot", vec![("email", email.as_str())]),
        (
            "/reset",
            vec![("token", "x"), ("password", "a long new password")],
        ),
        ("/settings/account/verify", vec![]),
        (
            "/settings/account/password",
            vec![
                ("current_password", password.as_str()),
                ("new_password", "a long new password"),
            ],
        ),
        ("/settings/account/sessions/end-others", vec![]),
    ] {
        let refused = browser.post(path, &fields).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            refused.body
        );
    }
    assert_eq!(other.get("/settings/account").await.status, StatusCode::OK);
    assert_eq!(app.outbox().len(), 1, "no mail came of the refused forms");

    // The mailed link opens a button, which confirms the address.
    let confirm = browser.get(&format!("/verify?token={token}")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    // (This test's browser sends only the fields it is given, besides the CSRF one:
    // the form's hidden token is passed as a browser would send it.)
    assert_eq!(
        confirm.attr("form#verify input[name=token]", "value"),
        token
    );
    let done = browser
        .submit_on(&confirm, "form#verify", &[("token", &token)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.text("#verified").contains(&email));
    let account = browser.get("/settings/account").await;
    assert_eq!(account.text("#email-status"), "confirmed");
    assert_eq!(account.count("#resend-verification"), 0);
    assert_eq!(account.count("#sessions tbody tr"), 2);

    // End the other browser's session from this one.
    let ended = browser
        .submit_on(&account, "form#end-other-sessions", &[])
        .await;
    assert_eq!(ended.location(), "/settings/account");
    assert_eq!(other.get("/settings/account").await.location(), "/login");

    // A wrong current password is refused on the page; the right one changes it.
    let wrong = browser
        .submit(
            "/settings/account",
            "form#change-password",
            &[
                ("current_password", "not it at all"),
                ("new_password", "a long new password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.count("p.error"), 1);
    let changed = browser
        .submit(
            "/settings/account",
            "form#change-password",
            &[
                ("current_password", &password),
                ("new_password", "a long new password"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.count("#account-notice"), 1);

    // Forgotten: the page answers alike for any address, and the mailed link sets a
    // new password and signs every browser out.
    let stranger = Browser::new(&app.base);
    for address in [email.as_str(), "nobody-here@example.com"] {
        let sent = stranger
            .submit("/forgot", "form#forgot", &[("email", address)])
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED);
        assert_eq!(sent.count("#reset-sent"), 1);
    }
    let reset = app.mailed_token(&email, "reset");
    let form = stranger.get(&format!("/reset?token={reset}")).await;
    let done = stranger
        .submit_on(
            &form,
            "form#reset",
            &[("token", &reset), ("password", "the newest password")],
        )
        .await;
    assert_eq!(done.location(), "/login?reset=1");
    assert_eq!(browser.get("/settings/account").await.location(), "/login");
    logged_in_as(&app, &email, "the newest password").await;
}

/// A browser logged in through the form with `email` and `password`.
async fn logged_in_as(app: &TestApp, email: &str, password: &str) -> Browser {
    let browser = Browser::new(&app.base);
    let page = browser
        .submit(
            "/login",
            "form#login",
            &[("email", email), ("password", password)],
        )
        .await;
    assert_eq!(page.location(), "/projects", "{}", page.body);
    browser
}

/// An admin sets the budget through the usage page's form (a malformed amount
/// re-renders it with the reason); once the spend reaches a threshold every page
/// shows the banner, to every member, and a viewer sees no form and cannot post one.
#[tokio::test]
async fn the_usage_page_sets_the_budget_for_admins_and_every_page_shows_its_banner() {
    // A point costs a tenth of a cent from the first one.
    let app = TestApp::spawn_adjusted(sextant_cli::Backend::Embedded, |config| {
        config.plan = billing::PricePlan {
            free_points: 0,
            per_million_points: rust_decimal::Decimal::from(1000),
            ..billing::PricePlan::default()
        }
    })
    .await;
    let team = app.signup().await;
    let run = app.new_run(&team.api_key).await;
    app.log_ok(&team.api_key, &run, sextant_tests::loss_batch("a", 0, 60))
        .await;
    let admin = logged_in(&app, &team).await;
    let page = admin.get("/projects").await;
    assert_eq!(page.count("#budget-banner"), 0, "no budget, no banner");
    let page = admin.get("/usage").await;
    assert_eq!(
        page.text("#budget-summary"),
        "No budget is set. Admins are mailed at 50, 80 and 100% of one."
    );

    let refused = admin
        .submit_on(&page, "form#budget-form", &[("monthly_budget", "0.001")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.text("#budget-error").contains("digits"));
    let saved = admin
        .submit_on(
            &page,
            "form#budget-form",
            &[("monthly_budget", "0.10"), ("hard_stop", "on")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), "/usage#budget");
    let page = admin.get("/usage").await;
    assert!(
        page.text("#budget-summary")
            .starts_with("0.06 USD of 0.10 USD spent (60%)."),
        "{}",
        page.text("#budget-summary")
    );
    assert_eq!(
        page.attr("form#budget-form input[name=monthly_budget]", "value"),
        "0.10"
    );
    // Set with the spend past half of it: told at once, and every page says so.
    assert!(page.text("#budget-banner").contains("50%"));
    assert!(
        admin
            .get("/projects")
            .await
            .text("#budget-banner")
            .contains("0.10 USD")
    );

    let (_, token) = app.add_member(&team, "viewer").await;
    let viewer = Browser::new(&app.base);
    viewer.set_cookie("sextant_session", &token);
    let page = viewer.get("/usage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.count("form#budget-form"), 0);
    assert!(page.text("#budget-banner").contains("50%"));
    let csrf = page.attr("form#logout input[name=csrf]", "value");
    let posted = viewer
        .post("/usage/budget", &[("csrf", &csrf), ("monthly_budget", "")])
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    let (_, budget) = app.get("/v1/budget", &team.api_key).await;
    assert_eq!(
        budget["monthly_budget"], "0.10",
        "the viewer changed nothing"
    );
}

/// A query value as a link carries it.
fn encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Three runs with params of each kind: `lr` (number), `optimizer` (text), `amp`
/// (boolean), one without `optimizer`. Answers their ids, oldest first.
async fn runs_with_params(app: &TestApp, key: &str, project: &str) -> Vec<String> {
    app.create_project(key, project).await;
    let mut ids = Vec::new();
    for (name, params) in [
        (
            "adam-fast",
            json!({"lr": 0.01, "optimizer": "adam", "amp": true}),
        ),
        (
            "adam-slow",
            json!({"lr": 0.0005, "optimizer": "adam", "amp": false}),
        ),
        ("plain", json!({"lr": 0.001, "amp": false})),
    ] {
        let run = app
            .create_run(key, project, json!({"name": name, "params": params}))
            .await;
        ids.push(text(&run, "id"));
    }
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn the_run_table_filters_by_param_conditions_and_refuses_a_bad_one_with_its_code() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    let ids = runs_with_params(&app, key, "sweep").await;
    let browser = logged_in(&app, &team).await;

    for (conditions, kept) in [
        (vec!["lr<=0.001"], vec![1, 2]),
        (vec!["lr<=0.001", "optimizer=adam"], vec![1]),
        (vec!["optimizer!=adam"], vec![2]),
        (vec!["amp=true"], vec![0]),
        (vec!["lr > 0.0005", "amp=false"], vec![2]),
        (vec!["optimizer=sgd"], vec![]),
    ] {
        let query: Vec<String> = conditions
            .iter()
            .map(|condition| format!("param={}", encoded(condition)))
            .collect();
        let page = browser
            .get(&format!("/projects/sweep?{}", query.join("&")))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{conditions:?}: {}", page.body);
        let expected: Vec<String> = kept.iter().map(|&i| ids[i].clone()).collect();
        assert_eq!(
            sorted(row_ids(&page)),
            sorted(expected.clone()),
            "{conditions:?}"
        );
        // The form shows each condition, and one empty field for another.
        let fields = page.attrs("form#filter input[name=param]", "value");
        assert_eq!(fields, conditions, "{conditions:?}");
        assert_eq!(
            page.count("form#filter input[name=param]"),
            conditions.len() + 1
        );

        // The JSON API takes the same conditions in one `param`, separated by `;`.
        let (status, body) = app
            .get(
                &format!(
                    "/v1/projects/sweep/runs?param={}",
                    encoded(&conditions.join(";"))
                ),
                key,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let listed: Vec<String> = body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| text(run, "id"))
            .collect();
        assert_eq!(sorted(listed), sorted(expected), "{conditions:?}");
    }

    // Sorting keeps the conditions.
    let filtered = browser
        .get(&format!("/projects/sweep?param={}", encoded("lr<=0.001")))
        .await;
    let sort = filtered.attr("th.param a.sort", "href");
    assert!(sort.contains("param=lr%3C%3D0.001"), "{sort}");

    for bad in ["lr<adam", "lr", "=3", "lr!3"] {
        let page = browser
            .get(&format!("/projects/sweep?param={}", encoded(bad)))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}: {}", page.body);
        let (status, body) = app
            .get(
                &format!("/v1/projects/sweep/runs?param={}", encoded(bad)),
                key,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(sextant_tests::error_code(&body), "invalid_filter", "{bad}");
    }
}

#[tokio::test]
async fn the_run_table_shows_chosen_columns_in_order_with_pinned_ones_first() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "cols").await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let rfc3339 = |at: time::OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // One run went on for 1h 02m 03s; the other started three days ago and goes on.
    let started = now - time::Duration::hours(2);
    let ended = text(
        &app.create_run(
            key,
            "cols",
            json!({"name": "ended", "params": {"lr": 0.1}, "tags": ["sweep"],
                   "created_at": rfc3339(started)}),
        )
        .await,
        "id",
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/runs/{ended}"),
            Some(key),
            Some(json!({"status": "succeeded",
                        "ended_at": rfc3339(started + time::Duration::seconds(3_723))})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let going = text(
        &app.create_run(
            key,
            "cols",
            json!({"name": "going", "params": {"lr": 0.2},
                   "created_at": rfc3339(now - time::Duration::days(3))}),
        )
        .await,
        "id",
    );
    app.log_ok(
        key,
        &going,
        json!({"batch_id": unique("b"), "series": {"loss": {"steps": [1, 2, 3], "values": [3.5, 1.25, 2.0]}}}),
    )
    .await;
    let browser = logged_in(&app, &team).await;

    // Without `cols` the table is as it was: no duration, owner or pinned columns.
    let default = browser.get("/projects/cols").await;
    assert_eq!(
        default.attrs("table#runs th[data-col]", "data-col"),
        [
            "name",
            "status",
            "created",
            "tags",
            "cost",
            "param:lr",
            "metric:loss:last"
        ]
    );
    assert_eq!(default.count("table#runs .pin"), 0);

    let cols = "metric:loss:max,duration,param:lr,owner,metric:loss:min,bogus,duration";
    let path = format!(
        "/projects/cols?cols={}&pin=3&sort=param:lr&order=asc",
        encoded(cols)
    );
    let table = browser.get(&path).await;
    assert_eq!(table.status, StatusCode::OK, "{}", table.body);
    // Unknown and repeated ids are left out; the name comes first.
    assert_eq!(
        table.attrs("table#runs th[data-col]", "data-col"),
        [
            "name",
            "metric:loss:max",
            "duration",
            "param:lr",
            "owner",
            "metric:loss:min"
        ]
    );
    assert_eq!(
        table.texts("table#runs thead th"),
        [
            "Select",
            "Name",
            "loss (max)",
            "Duration",
            "lr ▲",
            "Owner",
            "loss (min)"
        ]
    );
    assert_eq!(row_ids(&table), [ended.clone(), going.clone()]);
    assert_eq!(table.count("td.cost"), 0);
    assert_eq!(table.count("td.status"), 0);

    // The selection box, the name and the next two columns are pinned, each in a box of
    // its position's width; the last carries the edge.
    for row in ["thead tr", &format!("tr[data-run-id={going}]")] {
        let pinned = |css: &str| table.count(&format!("table#runs {row} {css}"));
        assert_eq!(pinned(".pin"), 4, "{row}");
        for position in 0..4 {
            assert_eq!(
                pinned(&format!(".pin.pin-{position} > .pin-box")),
                1,
                "{row}"
            );
        }
        assert_eq!(pinned(".pin-edge.pin-3"), 1, "{row}");
        assert_eq!(pinned(".owner.pin"), 0, "{row}");
    }
    assert_eq!(
        table.text(&format!("tr[data-run-id={going}] td.duration")),
        "3d 00h"
    );
    assert_eq!(
        table.text(&format!("tr[data-run-id={ended}] td.duration")),
        "1h 02m"
    );
    assert_eq!(
        table.texts(&format!("tr[data-run-id={going}] td.metric")),
        ["3.5", "1.25"]
    );
    assert_eq!(
        table.texts(&format!("tr[data-run-id={ended}] td.metric")),
        ["", ""]
    );
    // The owner is read once, from the team's members: the admin who made the key.
    assert_eq!(
        table.texts("td.owner"),
        [team.email.clone(), team.email.clone()]
    );

    // Every link keeps the layout, the filter and the sort.
    for link in [
        table.attr("th[data-col='param:lr'] a.sort", "href"),
        table.attr("th[data-col='metric:loss:min'] a.sort", "href"),
        table.attr("th[data-col=name] a.sort", "href"),
        table.attr("a#clear", "href"),
    ] {
        assert!(link.contains(&format!("cols={}", encoded(cols))), "{link}");
        assert!(link.contains("pin=3"), "{link}");
    }
    let by_min = table.attr("th[data-col='metric:loss:min'] a.sort", "href");
    assert!(by_min.contains("sort=metric%3Aloss%3Amin"), "{by_min}");
    let reversed = table.attr("th[data-col='param:lr'] a.sort", "href");
    assert!(reversed.contains("order=desc"), "{reversed}");
    let reversed = browser.get(&reversed).await;
    assert_eq!(row_ids(&reversed), [going.clone(), ended.clone()]);
    assert_eq!(
        reversed.attrs("table#runs th[data-col]", "data-col"),
        table.attrs("table#runs th[data-col]", "data-col")
    );
    // The filter form carries the layout and the sort as hidden fields.
    for (name, value) in [
        ("cols", cols),
        ("pin", "3"),
        ("sort", "param:lr"),
        ("order", "asc"),
    ] {
        assert_eq!(
            table.attr(
                &format!("form#filter input[type=hidden][name={name}]"),
                "value"
            ),
            value
        );
    }

    // A tag filters the table in the same layout.
    let tagged = browser
        .get(&format!(
            "/projects/cols?cols=tags,param:lr&pin=1&param={}",
            encoded("lr<1")
        ))
        .await;
    let tag_link = tagged.attr("td.tags a.tag", "href");
    for part in [
        "tag=sweep",
        "cols=tags%2Cparam%3Alr",
        "pin=1",
        "param=lr%3C1",
    ] {
        assert!(tag_link.contains(part), "{part} in {tag_link}");
    }
    assert_eq!(row_ids(&browser.get(&tag_link).await), [ended]);
    // An empty `cols` shows the name only.
    let bare = browser.get("/projects/cols?cols=").await;
    assert_eq!(bare.attrs("table#runs th[data-col]", "data-col"), ["name"]);
}

#[tokio::test]
async fn the_columns_form_sends_checked_columns_by_position_and_the_page_answers_with_their_cols_link()
 {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    runs_with_params(&app, key, "layout").await;
    let browser = logged_in(&app, &team).await;

    let page = browser
        .get("/projects/layout?name=a&sort=param:lr&cols=status,param:lr&pin=2")
        .await;
    assert_eq!(
        page.attr("form#columns-form", "method").to_lowercase(),
        "get"
    );
    assert_eq!(page.attr("form#columns-form", "action"), "/projects/layout");
    // The columns shown come first, numbered in their order; every other column follows.
    let offered = page.attrs("form#columns-form input[name=col]", "value");
    assert_eq!(offered[..2], ["status", "param:lr"]);
    for column in [
        "created",
        "duration",
        "owner",
        "tags",
        "cost",
        "param:amp",
        "param:optimizer",
    ] {
        assert!(
            offered.contains(&column.to_owned()),
            "{column} in {offered:?}"
        );
    }
    assert_eq!(
        page.attrs("form#columns-form input[name=col][checked]", "value"),
        ["status", "param:lr"]
    );
    assert_eq!(
        page.attr("form#columns-form input[name='at.param:lr']", "value"),
        "2"
    );
    assert_eq!(page.attr("form#columns-form input[name=pin]", "value"), "2");
    for (name, value) in [("name", "a"), ("sort", "param:lr")] {
        assert_eq!(
            page.attr(
                &format!("form#columns-form input[type=hidden][name={name}]"),
                "value"
            ),
            value
        );
    }
    assert_eq!(
        page.count("form#columns-form input[type=hidden][name=cols]"),
        0
    );

    // Checked columns go by their numbers, unnumbered ones after in the form's order.
    let sent = browser
        .get(&format!(
            "/projects/layout?tag=x&layout=1&col=owner&col=status&col={}&col=duration&at.status=2&at.{}=1&at.owner=&pin=2",
            encoded("param:a,b"),
            encoded("param:a,b"),
        ))
        .await;
    let location = sent.location();
    assert_eq!(
        location,
        format!(
            "/projects/layout?tag=x&cols={}&pin=2",
            encoded("param:a%2Cb,status,owner,duration")
        )
    );
    let chosen = browser.get(&location).await;
    assert_eq!(
        chosen.attrs("table#runs th[data-col]", "data-col"),
        ["name", "param:a,b", "status", "owner", "duration"]
    );
    // Nothing checked shows the name only.
    let none = browser.get("/projects/layout?layout=1").await;
    assert_eq!(none.location(), "/projects/layout?cols=");
}

#[tokio::test]
async fn selected_runs_open_in_the_workspace_through_a_second_submit_button() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    let ids = runs_with_params(&app, key, "pick").await;
    let browser = logged_in(&app, &team).await;

    let page = browser.get("/projects/pick").await;
    assert_eq!(page.attr("form#compare", "method").to_lowercase(), "get");
    let button = "form#compare button#open-workspace[type=submit]";
    assert_eq!(page.attr(button, "formaction"), "/projects/pick/workspace");
    assert_eq!(page.attr(button, "formmethod").to_lowercase(), "get");
    assert_eq!(page.text(button), "Open in workspace");
    // The form's only named fields are the runs' boxes, so the workspace gets
    // `run=ID&run=ID...`; each row still links to its run.
    assert_eq!(
        sorted(page.attrs("form#compare input[name]", "value")),
        sorted(ids.clone())
    );
    assert_eq!(page.count("form#compare input[name]:not([name=run])"), 0);
    for id in &ids {
        assert_eq!(
            page.attr(&format!("tr[data-run-id={id}] a.run-link"), "href"),
            format!("/runs/{id}")
        );
    }
}

#[tokio::test]
async fn the_workspace_charts_each_metric_of_the_newest_runs_the_filter_keeps_grouped_by_prefix() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    app.create_project(key, "sweep").await;
    app.create_project(key, "elsewhere").await;
    let mut ids = Vec::new();
    for index in 0..52 {
        let lr = if index % 2 == 0 { 0.1 } else { 0.01 };
        let run = text(
            &app.create_run(
                key,
                "sweep",
                json!({"name": format!("run-{index}"), "params": {"lr": lr}, "tags": ["opt=adam"]}),
            )
            .await,
            "id",
        );
        if index >= 49 {
            app.log_ok(
                key,
                &run,
                json!({"batch_id": unique("b"), "series": {
                    "train/loss": {"steps": [0, 1], "values": [1.0, 0.5]},
                    "val/acc": {"steps": [0], "values": [0.5]},
                    "system/gpu": {"steps": [0], "values": [90.0]},
                    "epoch": {"steps": [0], "values": [0.0]},
                }}),
            )
            .await;
        }
        ids.push(run);
    }
    let elsewhere = text(&app.create_run(key, "elsewhere", json!({})).await, "id");
    let browser = logged_in(&app, &team).await;

    let page = browser.get("/projects/sweep/workspace").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let spec = page.chart_spec();
    assert_eq!(spec["mode"], "workspace");
    let shown: Vec<&str> = spec["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["name"].as_str().unwrap())
        .collect();
    assert_eq!(shown.len(), 50, "at most 50 runs");
    assert_eq!(&shown[..3], ["run-51", "run-50", "run-49"], "newest first");
    assert!(page.text("#workspace-runs").contains("50 of 52"));
    assert_eq!(
        page.attrs("details.chart-group", "data-group"),
        vec!["train/", "val/", "other", "system/"]
    );
    assert_eq!(
        page.attrs("details.chart-group[open]", "data-group"),
        vec!["train/", "val/", "other"],
        "system metrics start collapsed"
    );
    assert_eq!(
        page.attrs("figure.chart", "data-title"),
        vec!["train/loss", "val/acc", "epoch", "system/gpu"]
    );
    let choices = page.attrs("#chart-controls select[name=group] option", "value");
    assert_eq!(choices, vec!["", "param:lr", "tag:opt", "tags"]);

    // Param conditions filter as on the run table.
    let page = browser
        .get("/projects/sweep/workspace?param=lr%3C0.05&smooth=0.5")
        .await;
    let spec = page.chart_spec();
    assert_eq!(spec["runs"].as_array().unwrap().len(), 26);
    assert!(
        spec["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|run| run["params"]["lr"] == "0.01")
    );
    assert_eq!(
        page.attr("#workspace-filter input[name=smooth]", "value"),
        "0.5",
        "the filter keeps the view"
    );
    let bad = browser
        .get("/projects/sweep/workspace?param=lr%3Cfast")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // The run table opens the workspace of the runs its filter keeps.
    let table = browser
        .get("/projects/sweep?param=lr%3C0.05&tag=opt%3Dadam&sort=name")
        .await;
    assert_eq!(
        table.attr("a#workspace-link", "href"),
        "/projects/sweep/workspace?tag=opt%3Dadam&param=lr%3C0.05"
    );

    // A read answers at most 200,000 points in all: well within what a function may
    // answer.
    let lines: Vec<String> = ids[49..]
        .iter()
        .map(|id| format!("line={id}::train/loss"))
        .collect();
    let too_many = browser
        .get(&format!("/points?{}&max_points=100000", lines.join("&")))
        .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.json()["error"]["code"], "invalid_max_points");
    let within = browser
        .get(&format!("/points?{}&max_points=50000", lines.join("&")))
        .await;
    assert_eq!(within.status, StatusCode::OK, "{}", within.body);

    // A selection draws exactly its runs; a run of another project is left out.
    let page = browser
        .get(&format!(
            "/projects/sweep/workspace?run={}&run={}&run={elsewhere}",
            ids[0], ids[51]
        ))
        .await;
    let spec = page.chart_spec();
    let shown: Vec<&str> = spec["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["id"].as_str().unwrap())
        .collect();
    assert_eq!(shown, vec![ids[51].as_str(), ids[0].as_str()]);

    // A saved view answers with its own URL.
    let saved = browser
        .submit(
            "/projects/sweep/workspace",
            "form#save-view",
            &[("name", "by lr"), ("query", "group=param%3Alr&smooth=0.6")],
        )
        .await;
    assert_eq!(saved.location(), "/projects/sweep/workspace?view=by%20lr");
    let opened = browser.get(&saved.location()).await;
    assert_eq!(
        opened.location(),
        "/projects/sweep/workspace?group=param%3Alr&smooth=0.6"
    );
    let missing = browser.get("/projects/sweep/workspace?view=nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Another team's project is not there, nor its runs through a selection.
    let other = app.signup().await;
    app.create_project(&other.api_key, "theirs").await;
    let foreign = browser.get("/projects/theirs/workspace").await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let theirs = app.new_run(&other.api_key).await;
    let page = browser
        .get(&format!("/projects/sweep/workspace?run={theirs}"))
        .await;
    assert_eq!(page.count("script#chart-spec"), 0, "{}", page.body);
    assert!(page.text("#workspace-runs").contains("0 selected"));
}

/// A series in millionths of a step (Neptune's fractional steps) reaches the charts as
/// stored, saying so; a range of whole steps covers the millionths within them.
#[tokio::test]
async fn a_chart_reads_a_series_of_fractional_steps_by_whole_steps() {
    let app = TestApp::spawn().await;
    let team = app.signup().await;
    let key = &team.api_key;
    let run = app.new_run(key).await;
    app.log_ok(
        key,
        &run,
        json!({"batch_id": "m", "step_units": {"val": "micro", "stdout": "micro"},
               "series": {"val": {"steps": [500_000, 1_000_000, 1_500_000, 2_250_000],
                                  "values": [4.0, 3.0, 2.0, 1.0]}},
               "text": {"stdout": [{"step": 1, "text": "epoch 1"}, {"step": 2_500_000, "text": "done"}]}}),
    )
    .await;
    let browser = logged_in(&app, &team).await;
    // Text lines show their steps as logged.
    let page = browser.get(&format!("/runs/{run}")).await;
    assert_eq!(page.text("pre.log"), "0.000001 epoch 1\n2.5 done\n");
    let points = browser
        .get(&format!("/points?line={run}::val&from=1&to=1"))
        .await;
    assert_eq!(points.status, StatusCode::OK, "{}", points.body);
    let line = &points.json()["lines"][0];
    assert_eq!(line["step_unit"], "micro");
    assert_eq!(line["steps"], json!([1_000_000, 1_500_000]));
    assert_eq!(line["values"], json!([3, 2]));
    let tail = browser
        .get(&format!("/points?line={run}:1500000:val"))
        .await
        .json();
    assert_eq!(tail["lines"][0]["steps"], json!([2_250_000]));
}
