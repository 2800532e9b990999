//! `sextant enqueue` and `sextant agent` against the real `sextant serve`: two agents
//! share ten jobs and run each once, recording output and exit statuses; an aborted
//! job's processes are gone within seconds; a job whose agent is killed is run again
//! by the other agent once the lease lapses.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, start_with_env, team_with_run};
use serde_json::{Value, json};

/// How long anything in these tests may take before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// A team with a project on a fresh server, a git repository holding the jobs'
/// scripts, and a directory the scripts leave marks in.
struct World {
    server: Server,
    api_key: String,
    project: String,
    repo: tempfile::TempDir,
    marks: tempfile::TempDir,
    cache: tempfile::TempDir,
    _data: tempfile::TempDir,
}

async fn world(server_env: &[(&str, &str)], scripts: &[(&str, &str)]) -> World {
    let data = tempfile::tempdir().unwrap();
    let server = start_with_env(data.path(), server_env);
    let project = "jobs".to_owned();
    let (api_key, _) = team_with_run(&server, &project).await;
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(args)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["config", "user.email", "agent@example.com"]);
    git(&["config", "user.name", "Agent"]);
    for (name, text) in scripts {
        std::fs::write(repo.path().join(name), text).unwrap();
        git(&["add", name]);
    }
    git(&["commit", "-q", "-m", "jobs"]);
    World {
        server,
        api_key,
        project,
        repo,
        marks: tempfile::tempdir().unwrap(),
        cache: tempfile::tempdir().unwrap(),
        _data: data,
    }
}

impl World {
    fn sextant(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sextant"));
        command
            .args(args)
            .current_dir(self.repo.path())
            .env("SEXTANT_URL", &self.server.base)
            .env("SEXTANT_API_KEY", &self.api_key)
            .env("SEXTANT_CACHE_DIR", self.cache.path())
            .env("MARKS", self.marks.path());
        command
    }

    /// `sextant enqueue` in the repository; answers the run id it prints.
    fn enqueue(&self, options: &[&str], command: &[&str]) -> String {
        let mut args = vec!["enqueue", "--project", &self.project];
        args.extend(options);
        args.push("--");
        args.extend(command);
        let output = self
            .sextant(&args)
            .output()
            .expect("running sextant enqueue");
        assert!(
            output.status.success(),
            "enqueue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Starts `sextant agent --name NAME`, its log in the marks directory.
    fn agent(&self, name: &str, options: &[&str]) -> Agent {
        let log = self.marks.path().join(format!("{name}.log"));
        let mut args = vec![
            "agent",
            "--project",
            &self.project,
            "--name",
            name,
            "--poll-secs",
            "0.2",
        ];
        args.extend(options);
        let child = self
            .sextant(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting sextant agent");
        Agent { child, log }
    }

    async fn get(&self, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.server.base))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    async fn texts(&self, run: &str, series: &str) -> Vec<String> {
        let page = self.get(&format!("/v1/runs/{run}/series/{series}")).await;
        serde_json::from_value(page["texts"].clone()).unwrap_or_default()
    }

    fn mark(&self, name: &str) -> PathBuf {
        self.marks.path().join(name)
    }

    /// The lines of a mark file, none while it does not exist.
    fn mark_lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.mark(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// An agent process, killed if the test ends first.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Waits for the agent to exit on its own, asserting it succeeds.
    async fn exits(&mut self) {
        let status = wait_for("the agent to exit", || self.child.try_wait().unwrap()).await;
        assert!(
            status.success(),
            "agent failed ({status}): {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it answers something, failing the test past the deadline.
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a process is gone (a zombie nobody reaped yet counts as gone).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Kills a process left behind on purpose, when the test ends.
struct Leftover(PathBuf);

impl Drop for Leftover {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

const HELLO: &str = r#"
# Called with --index N, the run's param.
echo "$SEXTANT_RUN_ID $SEXTANT_JOB_ATTEMPT" >> "$MARKS/ran"
echo "job $2 says hello"
echo "job $2 complains" >&2
test $(($2 % 4)) -ne 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_run_each_of_ten_jobs_exactly_once() {
    let w = world(&[], &[("hello.sh", HELLO)]).await;
    let mut runs = Vec::new();
    for index in 0..10 {
        let param = format!("index={index}");
        runs.push(w.enqueue(&["--param", &param], &["sh", "hello.sh"]));
    }
    let mut agents = [
        w.agent("agent-a", &["--exit-when-idle"]),
        w.agent("agent-b", &["--exit-when-idle"]),
    ];
    for agent in &mut agents {
        agent.exits().await;
    }

    let ran = w.mark_lines("ran");
    assert_eq!(ran.len(), 10, "{ran:?}");
    let expected: BTreeSet<String> = runs.iter().map(|run| format!("{run} 1")).collect();
    assert_eq!(ran.into_iter().collect::<BTreeSet<_>>(), expected);
    for (index, run) in runs.iter().enumerate() {
        let job = w.get(&format!("/v1/jobs/{run}")).await;
        let fails = index % 4 == 0;
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(job["attempts"], 1);
        assert_eq!(job["exit_code"], if fails { 1 } else { 0 });
        let status = if fails { "failed" } else { "succeeded" };
        assert_eq!(job["result"], status);
        assert_eq!(job["run"]["status"], status);
        assert_eq!(job["run"]["params"], json!({"index": index}));
        assert!(
            job["agent"] == "agent-a" || job["agent"] == "agent-b",
            "{job}"
        );
        assert_eq!(job["code"], "code/source.tar.gz");
        assert_eq!(job["run"]["git"]["commit"].as_str().map(str::len), Some(40));
        assert_eq!(
            w.texts(run, "stdout").await,
            [format!("job {index} says hello")]
        );
        assert_eq!(
            w.texts(run, "stderr").await,
            [format!("job {index} complains")]
        );
        let agent = w.texts(run, "agent").await;
        assert_eq!(agent.len(), 2, "{agent:?}");
        assert!(
            agent[0].ends_with(&format!("sh hello.sh --index {index}")),
            "{agent:?}"
        );
        assert_eq!(
            agent[1],
            format!("exited with status {}", if fails { 1 } else { 0 })
        );
    }
}

const SLEEPY: &str = r#"
echo $$ > "$MARKS/shell.pid"
sleep 300 &
echo $! > "$MARKS/sleep.pid"
echo started
wait
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_jobs_processes_are_gone_within_seconds() {
    let w = world(&[], &[("sleepy.sh", SLEEPY)]).await;
    let _shell = Leftover(w.mark("shell.pid"));
    let _sleep = Leftover(w.mark("sleep.pid"));
    let run = w.enqueue(&[], &["sh", "sleepy.sh"]);
    let mut agent = w.agent("agent", &["--exit-when-idle", "--grace-secs", "2"]);
    let pids = wait_for("the job to start its processes", || {
        let shell = w.mark_lines("shell.pid");
        let sleep = w.mark_lines("sleep.pid");
        (!shell.is_empty() && !sleep.is_empty()).then(|| [shell[0].clone(), sleep[0].clone()])
    })
    .await;
    assert!(!gone(&pids[0]) && !gone(&pids[1]));

    let response = reqwest::Client::new()
        .post(format!("{}/v1/jobs/{run}/cancel", w.server.base))
        .bearer_auth(&w.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cancelled = Instant::now();
    wait_for("the job's processes to go", || {
        pids.iter().all(|pid| gone(pid)).then_some(())
    })
    .await;
    let took = cancelled.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");

    agent.exits().await;
    let job = w.get(&format!("/v1/jobs/{run}")).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["result"], "aborted");
    assert_eq!(job["signal"], 15);
    assert_eq!(job["reason"], "the run was aborted");
    assert_eq!(job["run"]["status"], "aborted");
    assert_eq!(w.texts(&run, "stdout").await, ["started"]);
}

const ONCE: &str = r#"
echo "$SEXTANT_AGENT $SEXTANT_JOB_ATTEMPT" >> "$MARKS/ran"
if [ "$SEXTANT_JOB_ATTEMPT" = 1 ]; then
    echo $$ > "$MARKS/first.pid"
    exec sleep 300
fi
echo "attempt $SEXTANT_JOB_ATTEMPT finishes the job"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_job_is_run_again_by_the_other_agent_once_its_lease_lapses() {
    let w = world(&[("SEXTANT_JOB_LEASE_SECS", "2")], &[("once.sh", ONCE)]).await;
    // The killed agent's command outlives it, as it would on a real machine.
    let _first = Leftover(w.mark("first.pid"));
    let run = w.enqueue(&[], &["sh", "once.sh"]);
    let mut a = w.agent("agent-a", &["--exit-when-idle"]);
    let mut b = w.agent("agent-b", &["--exit-when-idle"]);
    let first = wait_for("the first attempt to start", || {
        w.mark_lines("ran").first().cloned()
    })
    .await;
    let (killed, survivor) = if first == "agent-a 1" {
        (&mut a, &mut b)
    } else {
        assert_eq!(first, "agent-b 1");
        (&mut b, &mut a)
    };
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    survivor.exits().await;

    let other = if first == "agent-a 1" {
        "agent-b"
    } else {
        "agent-a"
    };
    assert_eq!(w.mark_lines("ran"), [first.clone(), format!("{other} 2")]);
    let job = w.get(&format!("/v1/jobs/{run}")).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["agent"], other);
    assert_eq!(job["result"], "succeeded");
    assert_eq!(job["run"]["status"], "succeeded");
    assert_eq!(
        w.texts(&run, "stdout").await,
        ["attempt 2 finishes the job"]
    );
    let agent_lines = w.texts(&run, "agent").await;
    let dead = first.trim_end_matches(" 1");
    assert!(
        agent_lines.contains(&format!(
            "attempt 1 (agent {dead}) stopped renewing its lease; attempt 2 runs on agent {other}"
        )),
        "{agent_lines:?}"
    );
}

const LEAK: &str = r#"
printf '%s' "$SEXTANT_API_KEY" > "$MARKS/credential"
"#;

/// Whoever can enqueue a job must not learn the agent's key through it: the command
/// gets a credential of its own run, which logs to that run, reaches nothing else, and
/// stops working beyond the data plane once the job is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_command_gets_a_credential_for_its_run_and_not_the_agents_key() {
    let w = world(&[], &[("leak.sh", LEAK)]).await;
    let run = w.enqueue(&[], &["sh", "leak.sh"]);
    w.agent("agent", &["--exit-when-idle"]).exits().await;
    let credential = std::fs::read_to_string(w.mark("credential")).expect("the command ran");
    assert!(!credential.is_empty());
    assert_ne!(
        credential, w.api_key,
        "the command was handed the agent's key"
    );

    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{}{path}", w.server.base))
            .bearer_auth(&credential)
    };
    let logged = call(reqwest::Method::POST, &format!("/v1/runs/{run}/log"))
        .json(
            &json!({"batch_id": "from-the-job", "series": {"x": {"steps": [1], "values": [1.0]}}}),
        )
        .send()
        .await
        .unwrap();
    // The job is done and its run ended, which the data plane says in its own words.
    assert_eq!(logged.status(), 409, "{}", logged.text().await.unwrap());
    for (method, path) in [
        (reqwest::Method::GET, "/v1/projects".to_owned()),
        (reqwest::Method::GET, "/v1/api-keys".to_owned()),
        (reqwest::Method::GET, format!("/v1/runs/{run}")),
    ] {
        let status = call(method.clone(), &path).send().await.unwrap().status();
        assert!(
            status == 401 || status == 403,
            "{method} {path} with the job's credential: {status}"
        );
    }
}
