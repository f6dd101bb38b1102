//! Benchmark: the memory and time one hostile push costs while it is parsed (issue 15,
//! D1), body by body, with a counting allocator: the peak of live heap bytes above what
//! was live before (the body itself, already read, not counted), and the median wall
//! time of the parse. Also the protobuf bodies decoded by the `prometheus` crate's
//! generated types (rust-protobuf) instead of poolwatch's own decoder (issue 17).
//! Run it with `cargo bench --bench push_memory`; the figures are in docs/benchmarks.md
//! and the module doc of `src/ingest/pushgateway/protobuf.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use poolwatch::ingest::json::{parse_batch, parse_pool};
use poolwatch::ingest::pushgateway::path::GroupingKey;
use poolwatch::ingest::pushgateway::{group, mapping, parse_body, BodyFormat, Limits};

#[path = "../tests/common/hostile.rs"]
mod hostile;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap bytes above the start while `f` runs, and its median time over `runs`.
fn measure<T>(runs: usize, mut f: impl FnMut() -> T) -> (usize, Duration, T) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            drop(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    (peak, times[runs / 2], out)
}

/// What the Pushgateway handler does with a body before the store: parse, apply the
/// method to an empty group, map to pools.
fn pushgateway(format: BodyFormat, body: &[u8]) -> Result<usize, String> {
    let key = GroupingKey::new("hostile", &[]);
    let families = parse_body(format, body, &Limits::default()).map_err(|e| e.to_string())?;
    let group = group::apply(None, group::Method::Put, families)
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    mapping::map_group(&key, group.families(), "pod", 1000)
        .map(|m| m.pools.len())
        .map_err(|e| e.to_string())
}

/// Delimited `MetricFamily` messages decoded by rust-protobuf, as the `prometheus`
/// crate's generated types are: the decode alone, before any conversion.
fn crate_decode(body: &[u8]) -> Result<usize, String> {
    let mut input = protobuf::CodedInputStream::from_bytes(body);
    let mut metrics = 0;
    while !input.eof().map_err(|e| e.to_string())? {
        let family: prometheus::proto::MetricFamily =
            input.read_message().map_err(|e| e.to_string())?;
        metrics += family.get_metric().len();
    }
    Ok(metrics)
}

fn main() {
    let limit = 1 << 20;
    let text = hostile::text_body(limit);
    let pb = hostile::protobuf_body(limit);
    let unknown = hostile::protobuf_family(limit, "app_requests_in_flight");
    let empty = hostile::protobuf_empty_metrics(limit);
    let dense = hostile::dense_text_body(limit);
    let batch = hostile::json_batch_body(limit);
    let array = hostile::json_array_body(limit);
    let wide = hostile::json_wide_body(limit);
    let runs = 5;
    println!("| body | bytes | peak heap above the body | ratio | median time | outcome |");
    println!("|---|---:|---:|---:|---:|---|");
    let row = |name: &str, body: &[u8], (peak, time, out): (usize, Duration, String)| {
        let out: String = out.chars().take(70).collect();
        println!(
            "| {name} | {} | {:.2} MiB | {:.1}× | {:.1} ms | {out} |",
            body.len(),
            peak as f64 / 1048576.0,
            peak as f64 / body.len() as f64,
            time.as_secs_f64() * 1e3
        );
    };
    let show = |r: Result<usize, String>| match r {
        Ok(n) => format!("ok: {n}"),
        Err(e) => e,
    };
    row(
        "text, 10 extra labels",
        &text,
        measure(runs, || show(pushgateway(BodyFormat::Text, &text))),
    );
    row(
        "protobuf, 10 extra labels",
        &pb,
        measure(runs, || {
            show(pushgateway(BodyFormat::ProtobufDelimited, &pb))
        }),
    );
    row(
        "protobuf, rust-protobuf decode only",
        &pb,
        measure(runs, || show(crate_decode(&pb))),
    );
    row(
        "protobuf, a family no client writes (parsed whole)",
        &unknown,
        measure(runs, || {
            show(pushgateway(BodyFormat::ProtobufDelimited, &unknown))
        }),
    );
    row(
        "the same, rust-protobuf decode only",
        &unknown,
        measure(runs, || show(crate_decode(&unknown))),
    );
    row(
        "protobuf, one family of 500,000 empty metrics",
        &empty,
        measure(runs, || {
            show(pushgateway(BodyFormat::ProtobufDelimited, &empty))
        }),
    );
    row(
        "the same, rust-protobuf decode only",
        &empty,
        measure(runs, || show(crate_decode(&empty))),
    );
    row(
        "text, 64 labels a line",
        &dense,
        measure(runs, || show(pushgateway(BodyFormat::Text, &dense))),
    );
    row(
        "JSON batch of small pools",
        &batch,
        measure(runs, || {
            show(
                parse_batch(&batch, "pod", 500)
                    .map(|p| p.len())
                    .map_err(|e| e.to_string()),
            )
        }),
    );
    for (name, body) in [
        ("JSON, an array field", &array),
        ("JSON, distinct keys", &wide),
    ] {
        row(
            name,
            body,
            measure(runs, || {
                show(
                    parse_pool(body, "a", "p", None, "pod")
                        .map(|_| 1)
                        .map_err(|e| e.to_string()),
                )
            }),
        );
    }
}
