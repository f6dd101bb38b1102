//! Decodes the file in argv[1] (.pb or .json) argv[2] times; prints the time per decode.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let body = std::fs::read(&args[1]).unwrap();
    let n: usize = args[2].parse().unwrap();
    let t = Instant::now();
    let mut metrics = 0;
    for _ in 0..n {
        let r = if args[1].ends_with(".json") {
            serde_json::from_slice::<ExportMetricsServiceRequest>(&body).unwrap()
        } else {
            ExportMetricsServiceRequest::decode(&body[..]).unwrap()
        };
        metrics += r
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .map(|s| s.metrics.len())
            .sum::<usize>();
    }
    println!(
        "opentelemetry-proto: {} decodes of {} bytes, {:.2} ms each ({metrics})",
        n,
        body.len(),
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
