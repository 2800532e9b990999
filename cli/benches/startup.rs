//! Time from starting `sextant serve` to its first 200 on /healthz, on a fresh data
//! directory (first start: secrets generated, store created) and on an existing one.
//! `cargo bench -p sextant-cli --bench startup` prints the figures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const RUNS: usize = 20;

fn healthz_ok(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// Starts the server and returns the time until /healthz first answers 200.
fn time_to_first_ok(data_dir: &Path) -> Duration {
    let started = Instant::now();
    let server = common::start(data_dir);
    let addr = server.base.trim_start_matches("http://").to_owned();
    while !healthz_ok(&addr) {
        std::thread::sleep(Duration::from_micros(200));
    }
    started.elapsed()
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<28} median {:6.1} ms   p90 {:6.1} ms   min {:6.1} ms   ({} runs)",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 9 / 10]),
        ms(samples[0]),
        samples.len()
    );
}

fn main() {
    let fresh: Vec<Duration> = (0..RUNS)
        .map(|_| time_to_first_ok(tempfile::tempdir().expect("tempdir").path()))
        .collect();
    let existing_dir = tempfile::tempdir().expect("tempdir");
    time_to_first_ok(existing_dir.path());
    let existing: Vec<Duration> = (0..RUNS)
        .map(|_| time_to_first_ok(existing_dir.path()))
        .collect();
    report("first start (fresh dir)", fresh);
    report("restart (existing dir)", existing);
}
