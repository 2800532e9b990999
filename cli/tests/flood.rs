//! A thousand wrong log-ins at once against the real `sextant serve`: password hashing
//! stays within its memory bound, every guess is answered (401, or 429 once the
//! address or the account must wait), and another team's member logging in from
//! another address during the flood gets in.

mod common;

use std::time::{Duration, Instant};

use common::{post, start};
use serde_json::json;

const FLOOD: usize = 1_000;
/// What `sextant serve` (a debug build) may grow to under the flood: about 40 MiB of
/// server, 19 MiB of Argon2 memory for each hashing thread the flood and the bystander
/// can keep busy (an address gets two attempts at once), and a thousand connections.
/// Measured: about 92 MiB.
const PEAK_RSS_BOUND_MIB: u64 = 128;

/// The peak resident memory of process `pid` so far (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/pid/status")
}

fn client_at(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn sign_up(base: &str, email: &str) {
    let (status, body) = post(
        &reqwest::Client::new(),
        format!("{base}/v1/signup"),
        None,
        json!({"team": email, "email": email, "password": "the right password"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_wrong_log_ins_at_once_stay_within_memory_and_lock_no_one_else_out() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let base = server.base.clone();
    sign_up(&base, "victim@example.com").await;
    sign_up(&base, "bystander@example.com").await;
    let before = peak_rss_kib(server.child.id());

    let guesser = client_at("127.0.0.1");
    let started = Instant::now();
    let guesses: Vec<_> = (0..FLOOD)
        .map(|n| {
            let client = guesser.clone();
            let url = format!("{base}/v1/login");
            // Half at the victim, half at addresses that may or may not exist.
            let email = if n % 2 == 0 {
                "victim@example.com".to_owned()
            } else {
                format!("guess-{n}@example.com")
            };
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({"email": email, "password": format!("wrong guess {n}")}))
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
            })
        })
        .collect();

    // The bystander logs in while the flood is under way.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bystander_started = Instant::now();
    let (status, body) = post(
        &client_at("127.0.0.2"),
        format!("{base}/v1/login"),
        None,
        json!({"email": "bystander@example.com", "password": "the right password"}),
    )
    .await;
    let bystander_took = bystander_started.elapsed();
    assert_eq!(status, 200, "the bystander was kept out: {body}");

    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for guess in guesses {
        let status = guess.await.unwrap().expect("every guess is answered");
        *answers.entry(status).or_default() += 1;
    }
    let flood_took = started.elapsed();
    let peak = peak_rss_kib(server.child.id());
    eprintln!(
        "{FLOOD} wrong log-ins in {flood_took:.2?}: answers {answers:?}; the bystander's \
         log-in took {bystander_took:.2?}; peak RSS {:.1} MiB before the flood, {:.1} MiB \
         after (bound {PEAK_RSS_BOUND_MIB} MiB)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    assert!(
        answers
            .keys()
            .all(|status| [401, 429, 503].contains(status)),
        "{answers:?}"
    );
    assert!(
        answers.get(&429).copied().unwrap_or(0) > FLOOD / 2,
        "most guesses should be refused before hashing: {answers:?}"
    );
    assert!(
        peak < PEAK_RSS_BOUND_MIB * 1024,
        "peak RSS {peak} KiB is over the bound"
    );
}
