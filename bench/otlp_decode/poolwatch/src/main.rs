//! Decodes the file in argv[1] (.pb or .json) argv[2] times; prints the time per decode.

use poolwatch::ingest::otlp::{json, protobuf, Limits};

use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let body = std::fs::read(&args[1]).unwrap();
    let n: usize = args[2].parse().unwrap();
    let limits = Limits::default();
    let t = Instant::now();
    let mut points = 0;
    for _ in 0..n {
        let e = if args[1].ends_with(".json") {
            json::decode(&body, &limits)
        } else {
            protobuf::decode(&body, &limits)
        }
        .unwrap();
        points += e.resources[0].metrics.len();
    }
    println!(
        "poolwatch: {} decodes of {} bytes, {:.2} ms each ({points})",
        n,
        body.len(),
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
