//! End to end in a real browser: headless Chromium (Debian's `chromium`, driven over
//! WebDriver by its `chromedriver`) against the real `sextant serve` binary. A team
//! signs up through the form, confirms its address from the link in the server's
//! outbox, logs out, resets its password through the mail and logs in with the new
//! one, creates a key on the settings page, logs a run through
//! the API with that key, finds the run's chart with the logged extremes, aborts the
//! run from its page and shares it; a fresh logged-out browser opens the share URL.
//! Then the team grows: the admin invites a teammate from the members page, who opens
//! the mailed link in a browser of their own, joins and sees the run; demoted to
//! viewer, they lose its write controls, and removed, they are logged out on their
//! next request. Screenshots of the account, run, share, members and join pages are
//! written under `target/screenshots/`.
//!
//! A second walk-through explores a sweep in the project workspace: hovers a chart and
//! checks every value under the cursor against what was logged, highlights and hides a
//! run from the legend, drags to zoom and sees every logged point of the range (which
//! the overview had merged), double-clicks back, smooths, switches to a log scale,
//! groups by a param, saves the view and opens it by its URL, and opens a shared run's
//! charts logged out; screenshots of the workspace, the zoomed chart and the shared
//! charts go to `target/screenshots/` too.
//!
//! It is ignored unless asked for, so a plain `cargo test` reports it skipped;
//! `scripts/test.sh` installs Chromium and ChromeDriver, sets `SEXTANT_CHROMIUM` and
//! `SEXTANT_CHROMEDRIVER`, and runs it.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Server, post, start};
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use sextant_tests::chromium::{ChromeDriver, tool};

/// How long any one thing may take to appear: a page, an element, a driver.
const WAIT: Duration = Duration::from_secs(10);
/// The browser's window: what the screenshots show.
const WINDOW: (u32, u32) = (1280, 800);
/// The whole test, however its steps add up.
const WHOLE_TEST: Duration = Duration::from_secs(180);

const SERIES: &str = "train/loss";
const PASSWORD: &str = "a long enough password";
const NEW_PASSWORD: &str = "a newer, longer password";
/// The logged extremes: a spike up and a dip down inside a smooth curve.
const MAX: f64 = 1234.5678;
const MIN: f64 = -0.001953125;

#[tokio::test]
#[ignore = "needs Chromium and ChromeDriver; scripts/test.sh installs them"]
async fn a_team_signs_up_logs_a_run_aborts_and_shares_it_in_a_real_browser() {
    tokio::time::timeout(WHOLE_TEST, scenario())
        .await
        .expect("the browser test took longer than its bound");
}

async fn scenario() {
    let data = tempfile::tempdir().expect("data directory");
    let server = start(data.path());
    let browsers = Browsers::start().await;
    let screenshots = screenshot_dir();
    let api = reqwest::Client::new();

    let browser = browsers.open().await;
    let page = Page {
        client: &browser,
        server: &server,
    };

    // Sign up through the form, from the home page's link.
    page.open("/").await;
    page.wait_for("a#signup-link").await.click().await.unwrap();
    let form = page.wait_for("form#signup").await;
    let email = format!("browser-{}@example.com", std::process::id());
    fill(&form, "team", "Browser Whales").await;
    fill(&form, "email", &email).await;
    fill(&form, "password", PASSWORD).await;
    submit(&form).await;
    let signup_key = page.wait_for("code#api-key").await.text().await.unwrap();
    assert!(signup_key.starts_with("sxt_"), "an API key: {signup_key:?}");
    let snippet = page.wait_for("pre#sdk-snippet").await.text().await.unwrap();
    assert!(!snippet.is_empty(), "an SDK snippet after sign-up");
    page.wait_for("form#logout").await;
    page.wait_for("a#continue").await.click().await.unwrap();
    page.wait_for_path("/projects").await;

    // Confirm the address from the link the server mailed to its outbox.
    page.follow(&mailed_link(data.path(), &email, "verify"))
        .await;
    submit(&page.wait_for("form#verify").await).await;
    assert!(page.text("#verified").await.contains(&email));
    page.open("/settings/account").await;
    assert_eq!(page.text("#email-status").await, "confirmed");
    page.screenshot(&screenshots.join("account-page.png")).await;

    // Log out, forget the password, and set a new one through the mail.
    submit(&page.wait_for("form#logout").await).await;
    page.wait_for("a#login-link").await;
    page.open("/login").await;
    page.wait_for("a#forgot-link").await.click().await.unwrap();
    let form = page.wait_for("form#forgot").await;
    fill(&form, "email", &email).await;
    submit(&form).await;
    page.wait_for("#reset-sent").await;
    page.follow(&mailed_link(data.path(), &email, "reset"))
        .await;
    let form = page.wait_for("form#reset").await;
    fill(&form, "password", NEW_PASSWORD).await;
    submit(&form).await;
    page.wait_for("#login-notice").await;
    let form = page.wait_for("form#login").await;
    fill(&form, "email", &email).await;
    fill(&form, "password", PASSWORD).await;
    submit(&form).await;
    assert!(
        page.wait_for("p.error")
            .await
            .text()
            .await
            .unwrap()
            .contains("wrong"),
        "the old password no longer logs in"
    );
    let form = page.wait_for("form#login").await;
    fill(&form, "email", &email).await;
    fill(&form, "password", NEW_PASSWORD).await;
    submit(&form).await;
    page.wait_for_path("/projects").await;

    // A key of its own for the training code, made on the settings page.
    page.open("/settings/keys").await;
    let form = page.wait_for("form#new-key").await;
    fill(&form, "name", "trainer").await;
    let role = form.find(Locator::Css("[name=role]")).await.unwrap();
    if role
        .tag_name()
        .await
        .unwrap()
        .eq_ignore_ascii_case("select")
    {
        role.select_by_value("member").await.unwrap();
    } else {
        role.clear().await.unwrap();
        role.send_keys("member").await.unwrap();
    }
    submit(&form).await;
    let key = page
        .wait_for("code#new-key-secret")
        .await
        .text()
        .await
        .unwrap();
    assert!(key.starts_with("sxt_"), "a new API key: {key:?}");
    assert_ne!(key, signup_key);

    // Training code logs a run through the API with that key.
    let (status, project) = post(
        &api,
        format!("{}/v1/projects", server.base),
        Some(&key),
        json!({"name": "browser"}),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let run_name = "spiky-baseline";
    let (status, run) = post(
        &api,
        format!("{}/v1/projects/browser/runs", server.base),
        Some(&key),
        json!({"name": run_name}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().expect("a run id").to_owned();
    let steps: Vec<i64> = (0..300).collect();
    let values: Vec<f64> = steps
        .iter()
        .map(|&step| match step {
            137 => MAX,
            222 => MIN,
            _ => 1.0 / (1.0 + step as f64 / 20.0),
        })
        .collect();
    let (status, logged) = post(
        &api,
        format!("{}/v1/runs/{run_id}/log", server.base),
        Some(&key),
        json!({"batch_id": "browser-1", "series": {SERIES: {"steps": steps, "values": values}}}),
    )
    .await;
    assert_eq!(status, 200, "{logged}");
    assert_eq!(logged["abort_requested"], false, "{logged}");

    // The run page shows its chart with the logged extremes.
    let run_path = format!("/runs/{run_id}");
    page.open(&run_path).await;
    assert_eq!(page.text("h1").await, run_name);
    page.wait_for("form#logout").await;
    page.assert_chart_shows_extremes().await;
    let status_before = page.text("#run-status").await;
    assert!(
        status_before.to_lowercase().contains("running"),
        "a run that is logging reads running: {status_before:?}"
    );

    // Abort it from the page: the run is asked to stop, and reads as the server
    // reports it (still running, until its client ends it) with the request shown.
    let form = page.wait_for("form#abort").await;
    submit(&form).await;
    page.until("the page to show the abort request", || async {
        let body = page.find_text("body").await?;
        body.to_lowercase()
            .contains("abort requested")
            .then_some(())
    })
    .await;
    let api_run = get(&api, &format!("{}/v1/runs/{run_id}", server.base), &key).await;
    assert_eq!(api_run["abort_requested"], true, "{api_run}");
    let api_status = api_run["status"].as_str().expect("a status");
    assert_eq!(page.text("#run-status").await.trim(), api_status);
    // The training code's next batch is told to stop, and it ends the run as aborted
    // (as the SDK does).
    let (status, logged) = post(
        &api,
        format!("{}/v1/runs/{run_id}/log", server.base),
        Some(&key),
        json!({"batch_id": "browser-2", "heartbeat": true}),
    )
    .await;
    assert_eq!(status, 200, "{logged}");
    assert_eq!(logged["abort_requested"], true, "{logged}");
    let response = api
        .patch(format!("{}/v1/runs/{run_id}", server.base))
        .bearer_auth(&key)
        .json(&json!({"status": "aborted"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "ending the run as aborted");
    page.open(&run_path).await;
    assert_eq!(page.text("#run-status").await.trim(), "aborted");
    assert!(
        page.find_all("form#abort").await.is_empty(),
        "an aborted run offers no abort"
    );

    // Share it.
    page.open(&run_path).await;
    let form = page.wait_for("form#share").await;
    form.find(Locator::Css("[name=expires_in]")).await.unwrap();
    form.find(Locator::Css("[name=allow_downloads]"))
        .await
        .unwrap();
    submit(&form).await;
    let share_url = page
        .wait_for("input#share-url")
        .await
        .prop("value")
        .await
        .unwrap()
        .expect("the share URL as the input's value");
    assert!(
        share_url.starts_with(&format!("{}/r/", server.base)),
        "a share URL on this server: {share_url}"
    );
    // Back on the run page: aborted, charted, with its share listed.
    page.open(&run_path).await;
    assert_eq!(page.text("h1").await, run_name);
    page.screenshot(&screenshots.join("run-page.png")).await;

    // A fresh browser, logged out, opens the share URL.
    let stranger = browsers.open().await;
    let shared = Page {
        client: &stranger,
        server: &server,
    };
    stranger.goto(&share_url).await.unwrap();
    assert_eq!(shared.text("h1").await, run_name);
    shared.assert_chart_shows_extremes().await;
    for absent in ["form#abort", "form#logout", "form#share"] {
        assert!(
            shared.find_all(absent).await.is_empty(),
            "the shared page has {absent}"
        );
    }
    shared.screenshot(&screenshots.join("share-page.png")).await;
    stranger.close().await.unwrap();

    // The admin invites a teammate from the members page.
    page.open("/settings/members").await;
    let teammate_email = format!("teammate-{}@example.com", std::process::id());
    let form = page.wait_for("form#invite").await;
    fill(&form, "email", &teammate_email).await;
    form.find(Locator::Css("[name=role]"))
        .await
        .unwrap()
        .select_by_value("member")
        .await
        .unwrap();
    submit(&form).await;
    assert!(page.text("#invite-sent").await.contains(&teammate_email));

    // The teammate opens the mailed link in a browser of their own, logged out.
    let invited = browsers.open().await;
    let teammate = Page {
        client: &invited,
        server: &server,
    };
    teammate
        .follow(&mailed_link(data.path(), &teammate_email, "join"))
        .await;
    assert_eq!(teammate.text("#join-team").await, "Browser Whales");
    assert!(teammate.text("#join-invited-by").await.contains(&email));
    teammate
        .screenshot(&screenshots.join("join-page.png"))
        .await;
    let form = teammate.wait_for("form#join").await;
    fill(&form, "name", "Grace Hopper").await;
    fill(&form, "password", PASSWORD).await;
    submit(&form).await;
    teammate.wait_for_path("/projects").await;
    teammate.open("/projects/browser").await;
    assert!(teammate.text("table").await.contains(run_name));
    teammate.open(&run_path).await;
    assert_eq!(teammate.text("h1").await, run_name);
    teammate.wait_for("form#share").await;

    // The admin sees the teammate, and demotes them to viewer: the run's write
    // controls are gone from their page.
    page.open("/settings/members").await;
    let row = page.member_row(&teammate_email).await;
    assert!(
        text_in(&row, "td.member-name")
            .await
            .contains("Grace Hopper")
    );
    page.screenshot(&screenshots.join("members-page.png")).await;
    let form = row.find(Locator::Css("form.change-role")).await.unwrap();
    form.find(Locator::Css("[name=role]"))
        .await
        .unwrap()
        .select_by_value("viewer")
        .await
        .unwrap();
    submit(&form).await;
    page.wait_for_path("/settings/members").await;
    let row = page.member_row(&teammate_email).await;
    assert_eq!(
        row.find(Locator::Css("select[name=role]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("viewer")
    );
    teammate.open(&run_path).await;
    assert_eq!(teammate.text("h1").await, run_name);
    for control in ["form#share", "form#abort", "form.revoke-share"] {
        assert!(
            teammate.find_all(control).await.is_empty(),
            "a viewer sees {control}"
        );
    }

    // Removed, after the confirmation that says what it does: the teammate's next
    // request finds them logged out.
    let row = page.member_row(&teammate_email).await;
    row.find(Locator::Css("a.remove-member"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(page.text("ul#removal-effects").await.contains("logged out"));
    submit(&page.wait_for("form#remove-member").await).await;
    page.wait_for_path("/settings/members").await;
    assert_eq!(page.find_all("table#members tbody tr").await.len(), 1);
    teammate.open("/projects").await;
    teammate.wait_for_path("/login").await;

    invited.close().await.unwrap();
    browser.close().await.unwrap();
}

#[tokio::test]
#[ignore = "needs Chromium and ChromeDriver; scripts/test.sh installs them"]
async fn a_team_explores_its_runs_in_the_workspace_in_a_real_browser() {
    tokio::time::timeout(WHOLE_TEST, workspace_scenario())
        .await
        .expect("the workspace walk-through took longer than its bound");
}

/// Steps each workspace run logs `train/loss` at: more than a chart has pixels for, so
/// its overview merges points that a zoom takes apart.
const WORKSPACE_STEPS: i64 = 3_000;
/// The runs of the workspace: name, learning rate, and a scale for its curve.
const WORKSPACE_RUNS: [(&str, f64, f64); 3] = [
    ("alpha-lr0.1", 0.1, 1.0),
    ("bravo-lr0.1", 0.1, 1.3),
    ("charlie-lr0.01", 0.01, 2.0),
];

/// What a workspace run logs as `train/loss` at `step`: a decaying curve with a
/// wiggle, and a spike at step 1,500 for the first run.
fn workspace_loss(scale: f64, step: i64) -> f64 {
    if scale == 1.0 && step == 1_500 {
        return 50.0;
    }
    scale / (1.0 + step as f64 / 200.0) + 0.01 * ((step % 7) as f64)
}

async fn workspace_scenario() {
    let data = tempfile::tempdir().expect("data directory");
    let server = start(data.path());
    let browsers = Browsers::start().await;
    let screenshots = screenshot_dir();
    let api = reqwest::Client::new();

    // A team and its sweep, logged through the API.
    let email = format!("workspace-{}@example.com", std::process::id());
    let (status, team) = post(
        &api,
        format!("{}/v1/signup", server.base),
        None,
        json!({"team": "Sweepers", "email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 201, "{team}");
    let key = team["api_key"].as_str().expect("a key").to_owned();
    let (status, project) = post(
        &api,
        format!("{}/v1/projects", server.base),
        Some(&key),
        json!({"name": "sweep"}),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let mut run_ids = Vec::new();
    for (name, lr, scale) in WORKSPACE_RUNS {
        let (status, run) = post(
            &api,
            format!("{}/v1/projects/sweep/runs", server.base),
            Some(&key),
            json!({"name": name, "params": {"lr": lr}, "tags": ["sweep", "opt=adam"]}),
        )
        .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_str().expect("a run id").to_owned();
        let steps: Vec<i64> = (0..WORKSPACE_STEPS).collect();
        let loss: Vec<f64> = steps.iter().map(|&s| workspace_loss(scale, s)).collect();
        let val_steps: Vec<i64> = (0..WORKSPACE_STEPS).step_by(100).collect();
        let acc: Vec<f64> = val_steps
            .iter()
            .map(|&s| 1.0 - scale / (2.0 + s as f64 / 300.0))
            .collect();
        let gpu: Vec<f64> = val_steps.iter().map(|&s| 80.0 + (s % 13) as f64).collect();
        let (status, logged) = post(
            &api,
            format!("{}/v1/runs/{id}/log", server.base),
            Some(&key),
            json!({"batch_id": format!("workspace-{}", run_ids.len()), "series": {
                "train/loss": {"steps": steps, "values": loss},
                "val/acc": {"steps": val_steps, "values": acc},
                "system/gpu_util": {"steps": val_steps, "values": gpu},
            }}),
        )
        .await;
        assert_eq!(status, 200, "{logged}");
        run_ids.push(id);
    }

    let browser = browsers.open().await;
    let page = Page {
        client: &browser,
        server: &server,
    };
    // Every document records what the Content-Security-Policy blocks: the charts and
    // the vendored uPlot must draw under the strict policy, blocking nothing.
    browsers
        .driver
        .devtools(
            &browser,
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.cspViolations = [];\
                document.addEventListener('securitypolicyviolation', e =>\
                  window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"}),
        )
        .await
        .expect("a script for every new document");
    page.open("/login").await;
    let form = page.wait_for("form#login").await;
    fill(&form, "email", &email).await;
    fill(&form, "password", PASSWORD).await;
    submit(&form).await;
    page.wait_for_path("/projects").await;

    // From the run table, to the workspace.
    page.open("/projects/sweep").await;
    page.wait_for("a#workspace-link")
        .await
        .click()
        .await
        .unwrap();
    page.wait_for_path("/projects/sweep/workspace").await;
    page.wait_for_charts().await;
    let groups = page.find_all("details.chart-group").await;
    let mut labels = Vec::new();
    for group in &groups {
        labels.push((
            group.attr("data-group").await.unwrap().unwrap_or_default(),
            group.attr("open").await.unwrap().is_some(),
        ));
    }
    assert_eq!(
        labels,
        vec![
            ("train/".to_owned(), true),
            ("val/".to_owned(), true),
            ("system/".to_owned(), false)
        ],
        "metrics grouped by prefix, system metrics collapsed"
    );
    let loss_chart = "figure.chart[data-title='train/loss']";
    let legend = page.legend(loss_chart).await;
    assert_eq!(
        legend,
        vec!["charlie-lr0.01", "bravo-lr0.1", "alpha-lr0.1"],
        "a line a run, newest first"
    );
    let colour = |chart: &'static str| {
        let page = &page;
        async move {
            page.client
                .execute(
                    "return Array.from(document.querySelectorAll(arguments[0] + ' .legend .swatch'))\
                     .map(s => s.style.background);",
                    vec![json!(chart)],
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(
        colour(loss_chart).await,
        colour("figure.chart[data-title='val/acc']").await,
        "a run keeps its colour on every chart"
    );
    let spike = page
        .wait_for(&format!("{loss_chart} .legend li[data-max='50']"))
        .await;
    assert_eq!(
        spike.text().await.unwrap(),
        "alpha-lr0.1",
        "the spike survives the overview"
    );

    // Hover: the crosshair reads every run's step and value under the cursor.
    // Redrawn charts are new elements: each step looks the plot up again.
    let loss_plot = format!("{loss_chart} .u-over");
    let over = || page.wait_for(&loss_plot);
    page.hover(&over().await, 0.3).await;
    let tip = page
        .wait_for(&format!("{loss_chart} .tip:not([hidden])"))
        .await;
    let rows = tip.find_all(Locator::Css("tr[data-key]")).await.unwrap();
    assert_eq!(rows.len(), 3, "a row a run: {}", tip.text().await.unwrap());
    for row in rows {
        let name = text_in(&row, "th").await;
        let at = text_in(&row, ".tip-x").await;
        let value = text_in(&row, ".tip-value").await;
        let step: i64 = at
            .trim_start_matches("step ")
            .replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("a step in {at:?}"));
        let (_, _, scale) = WORKSPACE_RUNS
            .iter()
            .find(|(run, _, _)| *run == name.trim())
            .unwrap_or_else(|| panic!("a run named {name:?}"));
        let shown: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a value in {value:?}"));
        let logged = workspace_loss(*scale, step);
        assert!(
            (shown - logged).abs() <= 1e-5 * logged.abs().max(1.0),
            "{name} at step {step} shows {shown}, logged {logged}"
        );
    }

    // A running run's chart appends what it logs next, asking only for what is new.
    let before = page.attr_number(loss_chart, "data-points").await;
    let (status, logged) = post(
        &api,
        format!("{}/v1/runs/{}/log", server.base, run_ids[0]),
        Some(&key),
        json!({"batch_id": "workspace-live", "series": {
            "train/loss": {"steps": [WORKSPACE_STEPS, WORKSPACE_STEPS + 1], "values": [0.5, 0.25]},
        }}),
    )
    .await;
    assert_eq!(status, 200, "{logged}");
    page.until("the live chart to append the new points", || async {
        let now = page.attr_number(loss_chart, "data-points").await;
        (now > before).then_some(())
    })
    .await;

    // The legend highlights a run and hides it on a click; the URL keeps it hidden.
    let entry = page
        .wait_for(&format!(
            "{loss_chart} .legend li[data-key='{}']",
            run_ids[1]
        ))
        .await;
    page.hover(&entry, 0.5).await;
    page.wait_for(&format!(
        "{loss_chart} .legend li.focused[data-key='{}']",
        run_ids[1]
    ))
    .await;
    entry.click().await.unwrap();
    page.wait_for(&format!(
        "{loss_chart} .legend li.hidden[data-key='{}']",
        run_ids[1]
    ))
    .await;
    page.wait_for(&format!(
        "figure.chart[data-title='val/acc'] .legend li.hidden[data-key='{}']",
        run_ids[1]
    ))
    .await;
    assert!(page.query("hide").await.contains(&run_ids[1]));
    page.wait_for(&format!(
        "{loss_chart} .legend li[data-key='{}']",
        run_ids[1]
    ))
    .await
    .click()
    .await
    .unwrap();
    page.until("the run shown again", || async {
        page.query("hide").await.is_empty().then_some(())
    })
    .await;

    // Drag to zoom: the range is read again at full detail, so points that the
    // overview merged into one bucket come apart.
    let overview_points: usize = page.attr_number(loss_chart, "data-points").await;
    assert!(
        overview_points < 3 * WORKSPACE_STEPS as usize,
        "the overview is downsampled: {overview_points} points"
    );
    page.drag(&over().await, 0.48, 0.52).await;
    let zoomed = page.wait_for(&format!("{loss_chart}[data-zoomed]")).await;
    let range = zoomed.attr("data-zoomed").await.unwrap().unwrap();
    let (from, to) = range.split_once('-').expect("FROM-TO");
    let (from, to): (i64, i64) = (from.parse().unwrap(), to.parse().unwrap());
    assert!(
        to - from < 400 && from > 1_000 && to < 2_000,
        "zoomed into {from}-{to}"
    );
    let shown = page.attr_number(loss_chart, "data-points").await;
    assert_eq!(
        shown,
        3 * (to - from + 1) as usize,
        "every logged point of the range, for each of the three runs"
    );
    let overview_in_range: usize = page
        .client
        .execute_async(
            "const [runs, from, to, width, done] = arguments;\
             const lines = runs.map(r => 'line=' + r + '::train/loss').join('&');\
             fetch('/points?' + lines + '&max_points=' + width).then(r => r.json()).then(answer =>\
               done(answer.lines.map(l => l.steps.filter(s => s >= from && s <= to).length)\
                 .reduce((a, b) => a + b, 0)));",
            vec![
                json!(run_ids),
                json!(from),
                json!(to),
                json!(page.plot_width(loss_chart).await),
            ],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap() as usize;
    assert!(
        overview_in_range * 2 < shown,
        "the overview had {overview_in_range} points in {from}-{to}, the zoom {shown}"
    );
    zoomed
        .screenshot()
        .await
        .map(|png| {
            let path = screenshots.join("workspace-zoomed-chart.png");
            std::fs::write(&path, png).expect("writing the screenshot");
            println!("screenshot: {}", path.display());
        })
        .expect("a screenshot of the zoomed chart");
    page.double_click(&over().await).await;
    page.until("the zoom reset", || async {
        page.find_all(&format!("{loss_chart}[data-zoomed]"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // Smoothing and log scale, kept in the URL.
    page.client
        .execute(
            "const s = document.querySelector('#chart-controls [name=smooth]'); s.value = '0.8';\
             s.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(page.query("smooth").await, "0.8");
    page.hover(&over().await, 0.6).await;
    let tip = page.text(&format!("{loss_chart} .tip:not([hidden])")).await;
    assert!(
        tip.contains("raw "),
        "the raw value beside the smoothed one: {tip}"
    );
    page.wait_for("#chart-controls [name=logy]")
        .await
        .click()
        .await
        .unwrap();
    assert_eq!(page.query("logy").await, "true");

    // Time since each run started on the x-axis: the reading names both.
    page.wait_for("#chart-controls [name=x]")
        .await
        .select_by_value("relative")
        .await
        .unwrap();
    page.wait_for(&format!("{loss_chart}[data-x='relative']"))
        .await;
    page.hover(&over().await, 0.5).await;
    let reading = page
        .text(&format!("{loss_chart} .tip:not([hidden]) .tip-x"))
        .await;
    assert!(
        reading.contains("s · step "),
        "a duration and a step: {reading:?}"
    );
    assert_eq!(page.query("x").await, "relative");
    page.wait_for("#chart-controls [name=x]")
        .await
        .select_by_value("step")
        .await
        .unwrap();

    // Group by the learning rate: a line a group, with its run count.
    page.wait_for("#chart-controls [name=group]")
        .await
        .select_by_value("param:lr")
        .await
        .unwrap();
    let grouped = page.legend(loss_chart).await;
    assert_eq!(grouped, vec!["lr=0.01 (1 run)", "lr=0.1 (2 runs)"]);
    assert_eq!(page.query("group").await, "param:lr");

    // Save the view, and open it by its URL in the same session.
    let form = page.wait_for("form#save-view").await;
    fill(&form, "name", "by learning rate").await;
    submit(&form).await;
    let link = page.wait_for("a.view-link").await;
    page.wait_for_charts().await;
    assert_eq!(page.query("group").await, "param:lr");
    assert_eq!(link.text().await.unwrap(), "by learning rate");
    let view_url = link.attr("href").await.unwrap().unwrap();
    page.open("/projects/sweep/workspace").await;
    page.wait_for_charts().await;
    assert!(
        page.legend(loss_chart).await.len() == 3,
        "ungrouped without the view"
    );
    page.open(&view_url).await;
    page.wait_for_charts().await;
    assert_eq!(
        page.legend(loss_chart).await,
        grouped,
        "the saved view, grouped again"
    );
    assert_eq!(page.query("smooth").await, "0.8");
    assert_eq!(page.query("logy").await, "true");
    page.screenshot(&screenshots.join("workspace.png")).await;
    let blocked = page
        .client
        .execute("return window.cspViolations;", vec![])
        .await
        .unwrap();
    assert_eq!(
        blocked,
        json!([]),
        "the policy blocked nothing the page needs"
    );

    // The shared page draws the same charts, logged out.
    let (status, share) = post(
        &api,
        format!("{}/v1/runs/{}/shares", server.base, run_ids[0]),
        Some(&key),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{share}");
    let stranger = browsers.open().await;
    let shared = Page {
        client: &stranger,
        server: &server,
    };
    shared
        .follow(share["url"].as_str().expect("a share URL"))
        .await;
    shared.wait_for_charts().await;
    let chart = "figure.chart[data-title='train/loss']";
    assert_eq!(shared.legend(chart).await, vec!["train/loss"]);
    let over = shared.wait_for(&format!("{chart} .u-over")).await;
    shared.hover(&over, 0.3).await;
    shared
        .wait_for(&format!("{chart} .tip:not([hidden])"))
        .await;
    shared.drag(&over, 0.48, 0.52).await;
    shared.wait_for(&format!("{chart}[data-zoomed]")).await;
    shared
        .screenshot(&screenshots.join("shared-run-charts.png"))
        .await;
    stranger.close().await.unwrap();
    browser.close().await.unwrap();
}

/// Debian's Chromium and its ChromeDriver, from which each test opens browsers of its
/// own (fresh profiles: no cookie of another).
struct Browsers {
    chromium: PathBuf,
    driver: ChromeDriver,
}

impl Browsers {
    async fn start() -> Self {
        let chromium = tool("SEXTANT_CHROMIUM", "/usr/bin/chromium").expect("Chromium");
        let chromedriver =
            tool("SEXTANT_CHROMEDRIVER", "/usr/bin/chromedriver").expect("ChromeDriver");
        let driver = ChromeDriver::start(&chromedriver)
            .await
            .expect("chromedriver");
        Self { chromium, driver }
    }

    async fn open(&self) -> Client {
        self.driver
            .session(&self.chromium, WINDOW, WAIT)
            .await
            .expect("a browser")
    }
}

/// The text of the first element `css` finds inside `element`.
async fn text_in(element: &Element, css: &str) -> String {
    element
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css}: {error}"))
        .text()
        .await
        .expect("an element's text")
}

/// The newest link to `page` in the mail the server wrote for `to` in its outbox.
fn mailed_link(data_dir: &Path, to: &str, page: &str) -> String {
    sextant_storage_local::newest_link(&data_dir.join("outbox"), to, page)
        .expect("reading the outbox")
        .unwrap_or_else(|| panic!("no mail to {to} with a link to /{page}"))
}

/// `target/screenshots` of the workspace, made if need be.
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("SEXTANT_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("screenshots")
        });
    std::fs::create_dir_all(&dir).expect("creating the screenshot directory");
    dir.canonicalize().expect("the screenshot directory")
}

async fn fill(form: &Element, name: &str, value: &str) {
    let field = form
        .find(Locator::Css(&format!("[name={name}]")))
        .await
        .unwrap_or_else(|error| panic!("no field named {name} in the form: {error}"));
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks the form's submit button, as a person would.
async fn submit(form: &Element) {
    form.find(Locator::Css(
        "button:not([type=button]):not([type=reset]), input[type=submit]",
    ))
    .await
    .expect("a submit button in the form")
    .click()
    .await
    .expect("clicking the submit button");
}

async fn get(client: &reqwest::Client, url: &str, credential: &str) -> Value {
    let response = client
        .get(url)
        .bearer_auth(credential)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.expect("a JSON body")
}

/// One browser session on the server's pages.
struct Page<'a> {
    client: &'a Client,
    server: &'a Server,
}

impl Page<'_> {
    /// Opens a link as a mail reader would.
    async fn follow(&self, url: &str) {
        assert!(
            url.starts_with(&self.server.base),
            "{url} is not on this server"
        );
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("opening {url}: {error}"));
    }

    async fn open(&self, path: &str) {
        let url = format!("{}{path}", self.server.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|error| panic!("opening {url}: {error}"));
    }

    /// The first element `css` matches, once there is one.
    async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(error) => self.fail(&format!("no {css} ({error})")).await,
        }
    }

    async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("finding elements")
    }

    /// The text of `css` if the page has it now.
    async fn find_text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        element.text().await.expect("an element's text")
    }

    async fn wait_for_path(&self, path: &str) {
        self.until(&format!("the page at {path}"), || async {
            let url = self.client.current_url().await.ok()?;
            (url.path() == path).then_some(())
        })
        .await;
    }

    /// Polls `probe` until it answers something, for at most `WAIT`.
    async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                self.fail(&format!("waited {WAIT:?} for {what}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails with where the browser is and what it shows.
    async fn fail(&self, problem: &str) -> ! {
        let url = self.client.current_url().await.map(|url| url.to_string());
        let source = self.client.source().await.unwrap_or_default();
        let excerpt: String = source.chars().take(3000).collect();
        panic!("{problem} at {url:?}; the page:\n{excerpt}");
    }

    /// The members table's row of the member with address `email`.
    async fn member_row(&self, email: &str) -> Element {
        self.wait_for("table#members").await;
        for row in self.find_all("table#members tbody tr").await {
            if text_in(&row, "td.member-email").await == email {
                return row;
            }
        }
        self.fail(&format!("no member {email}")).await
    }

    /// The legend entries of a chart, in order.
    async fn legend(&self, chart: &str) -> Vec<String> {
        self.wait_for(&format!("{chart} .legend li")).await;
        let mut names = Vec::new();
        for item in self.find_all(&format!("{chart} .legend li")).await {
            names.push(item.text().await.unwrap());
        }
        names
    }

    /// A number the page states in an attribute of `css`.
    async fn attr_number(&self, css: &str, name: &str) -> usize {
        let value = self.wait_for(css).await.attr(name).await.unwrap();
        value
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no number in {css}[{name}]"))
    }

    /// The width of a chart's plot: what it asks points for.
    async fn plot_width(&self, chart: &str) -> u64 {
        self.client
            .execute(
                "return document.querySelector(arguments[0] + ' .plot').clientWidth;",
                vec![json!(chart)],
            )
            .await
            .unwrap()
            .as_u64()
            .expect("a width")
    }

    /// The value of a key of the page's URL query, empty when absent.
    async fn query(&self, key: &str) -> String {
        let url = self.client.current_url().await.expect("a URL");
        url.query_pairs()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    }

    /// Moves the mouse over `element`, at `across` of its width, halfway down.
    async fn hover(&self, element: &Element, across: f64) {
        let (_, _, width, _) = element.rectangle().await.expect("a rectangle");
        let x = (across - 0.5) * width;
        let moves = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
            element: element.clone(),
            duration: Some(Duration::from_millis(50)),
            x,
            y: 0.0,
        });
        self.client
            .perform_actions(moves)
            .await
            .expect("moving the mouse");
    }

    /// Drags across `element` from `from` to `to` of its width, as a person zooms.
    async fn drag(&self, element: &Element, from: f64, to: f64) {
        let (_, _, width, _) = element.rectangle().await.expect("a rectangle");
        let at = |across: f64| PointerAction::MoveToElement {
            element: element.clone(),
            duration: Some(Duration::from_millis(100)),
            x: (across - 0.5) * width,
            y: 0.0,
        };
        let drag = MouseActions::new("mouse".into())
            .then(at(from))
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(at(to))
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.client.perform_actions(drag).await.expect("dragging");
    }

    async fn double_click(&self, element: &Element) {
        let click = |actions: MouseActions| {
            actions
                .then(PointerAction::Down {
                    button: MOUSE_BUTTON_LEFT,
                })
                .then(PointerAction::Up {
                    button: MOUSE_BUTTON_LEFT,
                })
        };
        let moves = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
            element: element.clone(),
            duration: None,
            x: 0.0,
            y: 0.0,
        });
        self.client
            .perform_actions(click(click(moves)))
            .await
            .expect("double-clicking");
    }

    /// Every open chart has drawn what it read (`charts.js` marks the document).
    async fn wait_for_charts(&self) {
        self.wait_for("html[data-charts-drawn]").await;
    }

    /// A chart on the page has a line for the series with the logged extremes: its
    /// legend entry states the extremes of what the line draws.
    async fn assert_chart_shows_extremes(&self) {
        self.wait_for_charts().await;
        let entry = self
            .wait_for(&format!("#charts .legend li[data-key='{SERIES}']"))
            .await;
        let number = |value: Option<String>| -> f64 {
            value
                .expect("data-min and data-max on the legend entry")
                .parse()
                .expect("a number")
        };
        let min = number(entry.attr("data-min").await.unwrap());
        let max = number(entry.attr("data-max").await.unwrap());
        assert_eq!((min, max), (MIN, MAX), "the chart's extremes of {SERIES}");
        let canvas = self.wait_for("#charts figure.chart canvas").await;
        assert!(canvas.is_displayed().await.unwrap(), "the chart is drawn");
    }

    /// The whole page as a PNG: the window grown to the page's height first (twice, as
    /// a wider or taller window can reflow the page).
    async fn screenshot(&self, path: &Path) {
        for _ in 0..2 {
            let height = self
                .client
                .execute(
                    "return Math.ceil(document.documentElement.scrollHeight);",
                    vec![],
                )
                .await
                .ok()
                .and_then(|height| height.as_f64())
                .unwrap_or(800.0)
                .clamp(800.0, 4000.0);
            // The window is a little taller than its viewport.
            let _ = self.client.set_window_size(1280, height as u32 + 140).await;
        }
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
    }
}
