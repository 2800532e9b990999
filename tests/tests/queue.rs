//! Job queues on both stores: enqueueing, listing, claims (oldest first, by labels,
//! exactly one winner among agents racing for a job), heartbeats, finishing,
//! cancelling, leases that lapse and hand the job to another agent until its attempts
//! run out, and the refusals (bad input, viewers, other teams).

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sextant_domain::credentials::Caller;
use sextant_domain::projects::{self, Project, ProjectName};
use sextant_domain::queue::{self, Finish, JobState, NewJob, QueueError, QueueName};
use sextant_domain::runs::{self, Status};
use sextant_domain::series::{self, TextPoints};
use sextant_edge::state::AppState;
use sextant_storage::clock::ManualClock;
use sextant_tests::{Team, TestApp, aws_cases, cases, error_code, signed_up_caller, text, unique};
use time::{Duration, OffsetDateTime};

/// A team with a project, on an app.
struct Queues<'a> {
    app: &'a TestApp,
    team: Team,
    key: String,
    project: String,
}

impl<'a> Queues<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let team = app.signup().await;
        let project = unique("p");
        app.create_project(&team.api_key, &project).await;
        Self {
            app,
            key: team.api_key.clone(),
            team,
            project,
        }
    }

    fn jobs_path(&self, queue: &str) -> String {
        format!("/v1/projects/{}/queues/{queue}/jobs", self.project)
    }

    async fn enqueue_on(&self, queue: &str, body: Value) -> Value {
        let (status, job) = self.app.post(&self.jobs_path(queue), &self.key, body).await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        job
    }

    /// Enqueues `python train.py` on the default queue, answering the run id.
    async fn enqueue(&self, body: Value) -> String {
        let mut body = body;
        body["command"] = json!(["python", "train.py"]);
        text(&self.enqueue_on("default", body).await, "run_id")
    }

    async fn try_claim(&self, agent: &str, labels: &[&str]) -> (StatusCode, Value) {
        self.app
            .post(
                &format!("/v1/projects/{}/queues/default/claim", self.project),
                &self.key,
                json!({"agent": agent, "labels": labels}),
            )
            .await
    }

    /// The claimed job, or `None` on 204.
    async fn claim(&self, agent: &str, labels: &[&str]) -> Option<Value> {
        let (status, job) = self.try_claim(agent, labels).await;
        match status {
            StatusCode::OK => Some(job),
            StatusCode::NO_CONTENT => None,
            other => panic!("claim answered {other}: {job}"),
        }
    }

    async fn job_call(&self, run: &str, action: &str, body: Value) -> (StatusCode, Value) {
        self.app
            .post(&format!("/v1/jobs/{run}/{action}"), &self.key, body)
            .await
    }

    async fn job_ok(&self, run: &str, action: &str, body: Value) -> Value {
        let (status, job) = self.job_call(run, action, body).await;
        assert_eq!(status, StatusCode::OK, "{action}: {job}");
        job
    }

    async fn get(&self, run: &str) -> Value {
        let (status, job) = self.app.get(&format!("/v1/jobs/{run}"), &self.key).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        job
    }

    async fn list(&self, query: &str) -> Vec<Value> {
        let (status, page) = self
            .app
            .get(&format!("{}?{query}", self.jobs_path("default")), &self.key)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["jobs"].as_array().expect("jobs").clone()
    }
}

fn run_ids(jobs: &[Value]) -> Vec<String> {
    jobs.iter().map(|job| text(job, "run_id")).collect()
}

async fn a_job_is_enqueued_claimed_heartbeated_and_finished(app: TestApp) {
    let q = Queues::new(&app).await;
    let job = q
        .enqueue_on(
            "default",
            json!({
                "command": ["python", "train.py", "--fast"],
                "params": {"lr": 0.1, "model": {"depth": 12}},
                "labels": ["gpu"],
                "name": "first",
            }),
        )
        .await;
    assert_eq!(job["state"], "waiting");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["max_attempts"], 3);
    assert_eq!(job["queue"], "default");
    assert_eq!(job["labels"], json!(["gpu"]));
    assert_eq!(job["command"], json!(["python", "train.py", "--fast"]));
    assert_eq!(job["lease_secs"], Value::Null);
    assert_eq!(job["run"]["status"], "queued");
    assert_eq!(job["run"]["name"], "first");
    assert_eq!(job["run"]["params"], json!({"lr": 0.1, "model/depth": 12}));
    let run = text(&job, "run_id");
    assert_eq!(job["run"]["id"], run.as_str());
    assert_eq!(run_ids(&q.list("").await), std::slice::from_ref(&run));

    assert_eq!(q.claim("laptop", &[]).await, None, "the job needs a gpu");
    let claimed = q.claim("box-1", &["a100", "gpu"]).await.expect("a job");
    assert_eq!(claimed["run_id"], run.as_str());
    assert_eq!(claimed["state"], "claimed");
    assert_eq!(claimed["attempts"], 1);
    assert_eq!(claimed["agent"], "box-1");
    assert_eq!(claimed["lease_secs"], 60);
    assert_eq!(claimed["lease_expired"], false);
    assert_eq!(claimed["run"]["status"], "running");
    assert_eq!(q.claim("box-2", &["gpu"]).await, None, "it is taken");

    let beat = q.job_ok(&run, "heartbeat", json!({"attempt": 1})).await;
    assert_eq!(beat["state"], "claimed");
    assert_eq!(beat["run"]["abort_requested"], false);
    assert!(text(&beat, "lease_expires_at") >= text(&claimed, "lease_expires_at"));
    let (status, body) = q.job_call(&run, "heartbeat", json!({"attempt": 2})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "lease_lost");

    let done = q
        .job_ok(&run, "finish", json!({"attempt": 1, "exit_code": 0}))
        .await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["result"], "succeeded");
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["lease_secs"], Value::Null);
    assert_eq!(done["run"]["status"], "succeeded");
    let again = q
        .job_ok(&run, "finish", json!({"attempt": 1, "exit_code": 0}))
        .await;
    assert_eq!(
        again["finished_at"], done["finished_at"],
        "finishing again changes nothing"
    );
    let (status, body) = q
        .job_call(&run, "finish", json!({"attempt": 2, "exit_code": 1}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "lease_lost");

    assert_eq!(
        run_ids(&q.list("state=done").await),
        std::slice::from_ref(&run)
    );
    assert!(q.list("state=waiting,claimed").await.is_empty());
    assert_eq!(q.get(&run).await["result"], "succeeded");
}

async fn a_failing_command_fails_its_run_and_the_job_keeps_its_exit_status(app: TestApp) {
    let q = Queues::new(&app).await;
    let run = q.enqueue(json!({})).await;
    q.claim("box", &[]).await.expect("the job");
    let done = q
        .job_ok(
            &run,
            "finish",
            json!({"attempt": 1, "exit_code": null, "signal": 9, "reason": "out of memory"}),
        )
        .await;
    assert_eq!(done["result"], "failed");
    assert_eq!(done["signal"], 9);
    assert_eq!(done["exit_code"], Value::Null);
    assert_eq!(done["reason"], "out of memory");
    assert_eq!(done["run"]["status"], "failed");
}

async fn claims_take_the_oldest_job_whose_labels_the_agent_has(app: TestApp) {
    let q = Queues::new(&app).await;
    let a = q.enqueue(json!({"labels": ["gpu"]})).await;
    let b = q.enqueue(json!({})).await;
    let c = q.enqueue(json!({})).await;
    let d = q.enqueue(json!({"labels": ["gpu", "a100"]})).await;
    let elsewhere = text(
        &q.enqueue_on("other", json!({"command": ["true"]})).await,
        "run_id",
    );

    let mut order = Vec::new();
    while let Some(job) = q.claim("cpu-box", &[]).await {
        order.push(text(&job, "run_id"));
    }
    assert_eq!(order, [b, c]);
    assert_eq!(
        text(
            &q.claim("gpu-box", &["gpu"]).await.expect("a gpu job"),
            "run_id"
        ),
        a
    );
    assert_eq!(
        q.claim("gpu-box", &["gpu"]).await,
        None,
        "d also needs an a100"
    );
    assert_eq!(
        text(
            &q.claim("big-box", &["gpu", "a100", "nvme"])
                .await
                .expect("the last job"),
            "run_id"
        ),
        d
    );
    let (status, page) = q.app.get(&q.jobs_path("other"), &q.key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run_ids(page["jobs"].as_array().unwrap()), [elsewhere]);
    assert_eq!(page["jobs"][0]["state"], "waiting", "queues are apart");
}

async fn of_agents_racing_for_jobs_each_job_goes_to_exactly_one(app: TestApp) {
    let queues = Queues::new(&app).await;
    let q = &queues;
    // One job, eight agents asking at once: one gets it.
    let only = q.enqueue(json!({})).await;
    let answers = futures::future::join_all(
        (0..8).map(|i| async move { q.claim(&format!("agent-{i}"), &[]).await }),
    )
    .await;
    let winners: Vec<&Value> = answers.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(winners[0]["run_id"], only.as_str());
    assert_eq!(q.get(&only).await["attempts"], 1);

    // Ten jobs, eight agents each claiming until nothing is left: each job once.
    let mut enqueued = BTreeSet::new();
    for _ in 0..10 {
        enqueued.insert(q.enqueue(json!({})).await);
    }
    let claimed = futures::future::join_all((0..8).map(|i| async move {
        let mut mine = Vec::new();
        while let Some(job) = q.claim(&format!("agent-{i}"), &[]).await {
            mine.push(text(&job, "run_id"));
        }
        mine
    }))
    .await;
    let all: Vec<String> = claimed.into_iter().flatten().collect();
    assert_eq!(all.len(), 10, "{all:?}");
    assert_eq!(all.into_iter().collect::<BTreeSet<_>>(), enqueued);
    for job in q.list("").await {
        assert_eq!(job["attempts"], 1, "{job}");
    }
}

async fn cancelling_a_waiting_job_aborts_its_run_and_a_claimed_one_asks_its_agent_to_stop(
    app: TestApp,
) {
    let q = Queues::new(&app).await;
    let waiting = q.enqueue(json!({})).await;
    let cancelled = q.job_ok(&waiting, "cancel", json!({})).await;
    assert_eq!(cancelled["state"], "done");
    assert_eq!(cancelled["result"], "aborted");
    assert_eq!(cancelled["reason"], "cancelled");
    assert_eq!(cancelled["run"]["status"], "aborted");
    assert_eq!(
        q.job_ok(&waiting, "cancel", json!({})).await["state"],
        "done"
    );
    assert_eq!(q.claim("box", &[]).await, None);

    let running = q.enqueue(json!({})).await;
    q.claim("box", &[]).await.expect("the job");
    let asked = q.job_ok(&running, "cancel", json!({})).await;
    assert_eq!(asked["state"], "claimed", "its agent stops it");
    assert_eq!(asked["run"]["abort_requested"], true);
    let beat = q.job_ok(&running, "heartbeat", json!({"attempt": 1})).await;
    assert_eq!(beat["run"]["abort_requested"], true);
    let done = q
        .job_ok(&running, "finish", json!({"attempt": 1, "signal": 15}))
        .await;
    assert_eq!(done["result"], "aborted");
    assert_eq!(done["run"]["status"], "aborted");

    let finished = q.enqueue(json!({})).await;
    q.claim("box", &[]).await.expect("the job");
    q.job_ok(&finished, "finish", json!({"attempt": 1, "exit_code": 0}))
        .await;
    let (status, body) = q.job_call(&finished, "cancel", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "job_ended");

    // A queued run aborted through the runs API is skipped, and its job closed.
    let aborted = q.enqueue(json!({})).await;
    let (status, body) = app
        .post(&format!("/v1/runs/{aborted}/abort"), &q.key, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(q.claim("box", &[]).await, None);
    let closed = q.get(&aborted).await;
    assert_eq!(closed["state"], "done");
    assert_eq!(closed["result"], "aborted");
}

async fn a_run_its_sdk_ended_keeps_its_end_when_the_agent_finishes(app: TestApp) {
    let q = Queues::new(&app).await;
    for (sdk_status, exit_code) in [("succeeded", 1), ("failed", 0)] {
        let run = q.enqueue(json!({})).await;
        q.claim("box", &[]).await.expect("the job");
        let (status, body) = app
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/runs/{run}"),
                Some(&q.key),
                Some(json!({"status": sdk_status})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let beat = q.job_ok(&run, "heartbeat", json!({"attempt": 1})).await;
        assert_eq!(beat["run"]["status"], sdk_status);
        let done = q
            .job_ok(
                &run,
                "finish",
                json!({"attempt": 1, "exit_code": exit_code}),
            )
            .await;
        assert_eq!(done["result"], sdk_status);
        assert_eq!(done["exit_code"], exit_code);
        assert_eq!(done["run"]["status"], sdk_status);
    }
}

async fn an_existing_queued_run_is_enqueued_with_its_uploaded_code(app: TestApp) {
    let q = Queues::new(&app).await;
    let run = text(
        &app.create_run(&q.key, &q.project, json!({"status": "queued"}))
            .await,
        "id",
    );
    let body = json!({"run": run, "command": ["python", "train.py"], "code": "code/source.tar.gz"});
    let (status, refused) = app
        .post(&q.jobs_path("default"), &q.key, body.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(error_code(&refused), "invalid_code");

    app.store_artifact(
        &q.key,
        &run,
        "code/source.tar.gz",
        b"a tarball",
        Some("code"),
    )
    .await;
    let job = q.enqueue_on("default", body.clone()).await;
    assert_eq!(job["run_id"], run.as_str());
    assert_eq!(job["code"], "code/source.tar.gz");
    let (status, again) = app.post(&q.jobs_path("other"), &q.key, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(error_code(&again), "job_exists");

    let running = text(&app.create_run(&q.key, &q.project, json!({})).await, "id");
    let (status, body) = app
        .post(
            &q.jobs_path("default"),
            &q.key,
            json!({"run": running, "command": ["true"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "run_not_queued");

    let other_project = unique("other");
    app.create_project(&q.key, &other_project).await;
    let elsewhere = text(
        &app.create_run(&q.key, &other_project, json!({"status": "queued"}))
            .await,
        "id",
    );
    let (status, body) = app
        .post(
            &q.jobs_path("default"),
            &q.key,
            json!({"run": elsewhere, "command": ["true"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    for (body, code) in [
        (
            json!({"run": elsewhere, "command": ["true"], "name": "renamed"}),
            "invalid_request",
        ),
        (
            json!({"command": ["true"], "code": "code/source.tar.gz"}),
            "invalid_code",
        ),
    ] {
        let (status, answer) = app.post(&q.jobs_path("default"), &q.key, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(error_code(&answer), code);
    }
}

async fn bad_input_is_400_viewers_get_403_and_other_teams_404(app: TestApp) {
    let q = Queues::new(&app).await;
    let run = q.enqueue(json!({})).await;
    let jobs = q.jobs_path("default");
    for (path, body, code) in [
        (
            q.jobs_path("-bad"),
            json!({"command": ["true"]}),
            "invalid_queue_name",
        ),
        (
            q.jobs_path("has%20space"),
            json!({"command": ["true"]}),
            "invalid_queue_name",
        ),
        (jobs.clone(), json!({"command": []}), "invalid_command"),
        (jobs.clone(), json!({"command": [""]}), "invalid_command"),
        (
            jobs.clone(),
            json!({"command": ["a\u{0}b"]}),
            "invalid_command",
        ),
        (jobs.clone(), json!({"params": {}}), "invalid_request"),
        (
            jobs.clone(),
            json!({"command": ["true"], "labels": ["has space"]}),
            "invalid_label",
        ),
        (
            jobs.clone(),
            json!({"command": ["true"], "max_attempts": 0}),
            "invalid_max_attempts",
        ),
        (
            jobs.clone(),
            json!({"command": ["true"], "params": {"x": [1, {"a": null}]}, "tags": [""]}),
            "invalid_tag",
        ),
        (
            format!("/v1/projects/{}/queues/default/claim", q.project),
            json!({"agent": ""}),
            "invalid_agent",
        ),
        (
            format!("/v1/jobs/{run}/finish"),
            json!({"attempt": 0, "reason": "x".repeat(1001)}),
            "invalid_reason",
        ),
    ] {
        let (status, answer) = app.post(&path, &q.key, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(error_code(&answer), code, "{path}");
    }
    for (query, code) in [
        ("state=lost", "invalid_state"),
        ("limit=0", "invalid_limit"),
        ("cursor=nope", "invalid_cursor"),
    ] {
        let (status, answer) = app.get(&format!("{jobs}?{query}"), &q.key).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert_eq!(error_code(&answer), code);
    }

    // Viewers read; they neither enqueue nor act as agents.
    let viewer = app.key_with_role(&q.team, "viewer").await;
    let writes = [
        (jobs.clone(), json!({"command": ["true"]})),
        (
            format!("/v1/projects/{}/queues/default/claim", q.project),
            json!({"agent": "box"}),
        ),
        (format!("/v1/jobs/{run}/cancel"), json!({})),
        (format!("/v1/jobs/{run}/heartbeat"), json!({"attempt": 1})),
        (format!("/v1/jobs/{run}/finish"), json!({"attempt": 1})),
    ];
    for (path, body) in &writes {
        let (status, answer) = app.post(path, &viewer, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    assert_eq!(app.get(&jobs, &viewer).await.0, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/v1/jobs/{run}"), &viewer).await.0,
        StatusCode::OK
    );

    // Another team finds nothing: not the project, not the job.
    let stranger = app.signup().await.api_key;
    for (path, body) in &writes {
        let (status, answer) = app.post(path, &stranger, body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    for path in [
        jobs.clone(),
        format!("/v1/jobs/{run}"),
        "/v1/jobs/run_nope".to_owned(),
    ] {
        let (status, answer) = app.get(&path, &stranger).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert_eq!(error_code(&answer), "not_found");
    }
    // The stranger's own queue of the same name is another queue.
    app.create_project(&stranger, &q.project).await;
    let (status, _) = app
        .post(
            &format!("/v1/projects/{}/queues/default/claim", q.project),
            &stranger,
            json!({"agent": "box"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(q.get(&run).await["state"], "waiting");
}

async fn the_list_pages_oldest_first_and_filters_by_state(app: TestApp) {
    let q = Queues::new(&app).await;
    let mut enqueued = Vec::new();
    for _ in 0..5 {
        enqueued.push(q.enqueue(json!({})).await);
    }
    q.claim("box", &[]).await.expect("the oldest");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("limit=2&cursor={cursor}"),
            None => "limit=2".to_owned(),
        };
        let (status, page) = app
            .get(&format!("{}?{query}", q.jobs_path("default")), &q.key)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(run_ids(page["jobs"].as_array().unwrap()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, enqueued);
    assert_eq!(run_ids(&q.list("state=claimed").await), enqueued[..1]);
    assert_eq!(run_ids(&q.list("state=waiting").await), enqueued[1..]);
}

async fn deleting_a_run_or_its_project_removes_its_job(app: TestApp) {
    let q = Queues::new(&app).await;
    let deleted = q.enqueue(json!({})).await;
    let kept = q.enqueue(json!({})).await;
    let (status, _) = app.delete(&format!("/v1/runs/{deleted}"), &q.key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/v1/jobs/{deleted}"), &q.key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(run_ids(&q.list("").await), std::slice::from_ref(&kept));
    let (status, _) = app
        .delete(&format!("/v1/projects/{}", q.project), &q.key)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/v1/jobs/{kept}"), &q.key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

cases!(embedded, sextant_tests::TestApp::spawn;
    a_job_is_enqueued_claimed_heartbeated_and_finished,
    a_failing_command_fails_its_run_and_the_job_keeps_its_exit_status,
    claims_take_the_oldest_job_whose_labels_the_agent_has,
    of_agents_racing_for_jobs_each_job_goes_to_exactly_one,
    cancelling_a_waiting_job_aborts_its_run_and_a_claimed_one_asks_its_agent_to_stop,
    a_run_its_sdk_ended_keeps_its_end_when_the_agent_finishes,
    an_existing_queued_run_is_enqueued_with_its_uploaded_code,
    bad_input_is_400_viewers_get_403_and_other_teams_404,
    the_list_pages_oldest_first_and_filters_by_state,
    deleting_a_run_or_its_project_removes_its_job,
);
aws_cases!(dynamodb, sextant_tests::TestApp::spawn_on_aws;
    a_job_is_enqueued_claimed_heartbeated_and_finished,
    a_failing_command_fails_its_run_and_the_job_keeps_its_exit_status,
    claims_take_the_oldest_job_whose_labels_the_agent_has,
    of_agents_racing_for_jobs_each_job_goes_to_exactly_one,
    cancelling_a_waiting_job_aborts_its_run_and_a_claimed_one_asks_its_agent_to_stop,
    a_run_its_sdk_ended_keeps_its_end_when_the_agent_finishes,
    an_existing_queued_run_is_enqueued_with_its_uploaded_code,
    bad_input_is_400_viewers_get_403_and_other_teams_404,
    the_list_pages_oldest_first_and_filters_by_state,
    deleting_a_run_or_its_project_removes_its_job,
);

/// The lines of the run's `agent` series.
async fn agent_lines(
    state: &AppState,
    caller: &Caller,
    run: sextant_domain::ids::RunId,
) -> Vec<String> {
    let record = runs::load(&state.store, &caller.tenant, run)
        .await
        .expect("the run")
        .record;
    let page: series::SeriesPage<TextPoints> = series::read(
        &state.store,
        &caller.tenant,
        &record,
        queue::AGENT_SERIES,
        series::Window::default(),
    )
    .await
    .expect("the series");
    page.points.texts
}

async fn domain_project(state: &AppState) -> (Caller, Project, QueueName) {
    let caller = signed_up_caller(state).await;
    let project = projects::create(&state.store, &caller, ProjectName::parse("p").unwrap())
        .await
        .expect("a project");
    (caller, project, QueueName::parse("default").unwrap())
}

async fn a_lapsed_lease_hands_the_job_on_until_its_attempts_run_out_then_it_fails_with_the_reason(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let clock = Arc::new(ManualClock::starting_at(OffsetDateTime::now_utc()));
    let state = state.with_clock(clock.clone());
    let (caller, project, default) = domain_project(&state).await;
    let tenant = &caller.tenant;
    let none = BTreeSet::new();
    let new = NewJob {
        command: vec!["python".into(), "train.py".into()],
        max_attempts: Some(2),
        ..NewJob::default()
    };
    let run = queue::enqueue(&state.store, &caller, &project, default.clone(), new)
        .await
        .expect("enqueued")
        .record
        .run_id;
    let claim = |agent: &'static str| {
        let (state, project, default, none) = (&state, &project, &default, &none);
        async move {
            queue::claim(
                &state.store,
                state.queue_rules(),
                tenant,
                project,
                default,
                agent,
                none,
            )
            .await
            .expect("a claim")
        }
    };

    let first = claim("a").await.expect("the job");
    assert_eq!(first.record.attempts, 1);
    assert!(claim("b").await.is_none(), "the lease holds");
    clock.advance(Duration::seconds(30));
    queue::heartbeat(&state.store, state.queue_rules(), tenant, run, 1)
        .await
        .expect("renewed");
    clock.advance(Duration::seconds(59));
    assert!(
        claim("b").await.is_none(),
        "the heartbeat renewed the lease"
    );

    clock.advance(Duration::seconds(2));
    let second = claim("b").await.expect("the lapsed job");
    assert_eq!(second.record.attempts, 2);
    assert_eq!(second.record.agent.as_deref(), Some("b"));
    for refused in [
        queue::heartbeat(&state.store, state.queue_rules(), tenant, run, 1)
            .await
            .map(|_| ()),
        queue::finish(
            &state.store,
            state.queue_rules(),
            tenant,
            run,
            Finish {
                attempt: 1,
                exit_code: Some(0),
                ..Finish::default()
            },
        )
        .await
        .map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(QueueError::LeaseLost { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        agent_lines(&state, &caller, run).await,
        ["attempt 1 (agent a) stopped renewing its lease; attempt 2 runs on agent b"]
    );

    clock.advance(Duration::seconds(61));
    assert!(claim("c").await.is_none(), "no attempt is left");
    let job = queue::get(&state.store, tenant, run)
        .await
        .expect("the job");
    assert_eq!(job.record.state, JobState::Done);
    assert_eq!(job.record.result, Some(Status::Failed));
    let reason = job.record.reason.clone().expect("a reason");
    assert!(reason.starts_with("gave up after 2 attempts"), "{reason}");
    assert_eq!(job.run.expect("the run").status, Status::Failed);
    assert_eq!(
        agent_lines(&state, &caller, run).await.last(),
        Some(&reason)
    );
    assert!(claim("c").await.is_none());
}

async fn a_job_whose_agent_died_after_its_run_ended_takes_the_runs_end(
    (state, _keep): (AppState, Box<dyn std::any::Any + Send>),
) {
    let clock = Arc::new(ManualClock::starting_at(OffsetDateTime::now_utc()));
    let state = state.with_clock(clock.clone());
    let (caller, project, default) = domain_project(&state).await;
    let tenant = &caller.tenant;
    let new = NewJob {
        command: vec!["true".into()],
        ..NewJob::default()
    };
    let run = queue::enqueue(&state.store, &caller, &project, default.clone(), new)
        .await
        .expect("enqueued")
        .record
        .run_id;
    let none = BTreeSet::new();
    queue::claim(
        &state.store,
        state.queue_rules(),
        tenant,
        &project,
        &default,
        "a",
        &none,
    )
    .await
    .expect("a claim")
    .expect("the job");
    // The command's SDK ends the run; the agent dies before it reports.
    let changes = serde_json::from_value(json!({"status": "succeeded"})).unwrap();
    runs::patch(
        &state.store,
        state.settings.heartbeat_timeout,
        tenant,
        run,
        changes,
    )
    .await
    .expect("ended");
    clock.advance(Duration::seconds(61));
    assert!(
        queue::claim(
            &state.store,
            state.queue_rules(),
            tenant,
            &project,
            &default,
            "b",
            &none
        )
        .await
        .expect("a claim")
        .is_none(),
        "nothing is left to run"
    );
    let job = queue::get(&state.store, tenant, run)
        .await
        .expect("the job");
    assert_eq!(job.record.state, JobState::Done);
    assert_eq!(job.record.result, Some(Status::Succeeded));
    assert_eq!(job.record.attempts, 1);
}

mod domain {
    use super::*;

    cases!(embedded, sextant_tests::embedded_state;
        a_lapsed_lease_hands_the_job_on_until_its_attempts_run_out_then_it_fails_with_the_reason,
        a_job_whose_agent_died_after_its_run_ended_takes_the_runs_end,
    );
    aws_cases!(dynamodb, sextant_tests::aws_state;
        a_lapsed_lease_hands_the_job_on_until_its_attempts_run_out_then_it_fails_with_the_reason,
        a_job_whose_agent_died_after_its_run_ended_takes_the_runs_end,
    );
}
