//! Hostile push bodies of issue 15 (D1): as large as `http.max_body_bytes` allows and as
//! costly to parse per byte as the formats let them be. Shared by the cgroup test
//! (`tests/memory_limit.rs`) and `benches/push_memory.rs` (which includes this file).

#![allow(dead_code)]

/// `go_sql_open_connections` series with 10 extra labels, each naming another pool
/// (`db_name`), up to `limit` bytes of text format: about 9,300 series in 1 MiB.
pub fn text_body(limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    for n in 0.. {
        let labels: String = (0..10).map(|j| format!(",l{j}=\"{j}\"")).collect();
        let line = format!("go_sql_open_connections{{db_name=\"db{n}\"{labels}}} 1\n");
        if out.len() + line.len() > limit {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// The same series as client_golang's delimited protobuf, up to `limit` bytes.
pub fn protobuf_body(limit: usize) -> Vec<u8> {
    protobuf_family(limit, "go_sql_open_connections")
}

/// The same series in a family named `name`, up to `limit` bytes of delimited protobuf.
pub fn protobuf_family(limit: usize, name: &str) -> Vec<u8> {
    use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_field_type(MetricType::GAUGE);
    // Each metric takes about 100 bytes; stop well inside the limit.
    for n in 0..limit / 100 {
        let mut m = Metric::default();
        let mut pairs = vec![("db_name".to_string(), format!("db{n}"))];
        pairs.extend((0..10).map(|j| (format!("l{j}"), j.to_string())));
        let pairs = pairs
            .into_iter()
            .map(|(name, value)| {
                let mut p = LabelPair::default();
                p.set_name(name);
                p.set_value(value);
                p
            })
            .collect();
        m.set_label(pairs);
        let mut g = Gauge::default();
        g.set_value(1.0);
        m.set_gauge(g);
        family.mut_metric().push(m);
    }
    let mut out = Vec::new();
    loop {
        out.clear();
        prometheus::Encoder::encode(
            &prometheus::ProtobufEncoder::new(),
            &[family.clone()],
            &mut out,
        )
        .expect("encodes");
        if out.len() <= limit {
            return out;
        }
        let keep = family.get_metric().len() * 95 / 100;
        family.mut_metric().truncate(keep);
    }
}

/// One gauge family of empty metrics, two bytes each: as many messages as 1 MiB holds.
pub fn protobuf_empty_metrics(limit: usize) -> Vec<u8> {
    let name = b"g";
    let mut family = vec![0x0a, name.len() as u8];
    family.extend_from_slice(name);
    family.extend_from_slice(&[0x18, 0x01]);
    while family.len() + 2 + 10 < limit {
        family.extend_from_slice(&[0x22, 0x00]);
    }
    let mut out = Vec::new();
    let mut n = family.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&family);
    out
}

/// A family no client writes, 64 labels with empty values a line: as many labels per
/// byte as the text format allows within the label limit.
pub fn dense_text_body(limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    for n in 0.. {
        let labels: Vec<String> = (0..63).map(|j| format!("l{j}=\"\"")).collect();
        let line = format!("x{{n=\"{n}\",{}}} 1\n", labels.join(","));
        if out.len() + line.len() > limit {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// A JSON batch of as many small pools as fit in `limit` bytes.
pub fn json_batch_body(limit: usize) -> Vec<u8> {
    let mut out = b"{\"app\":\"a\",\"pools\":[".to_vec();
    for n in 0.. {
        let pool = format!("{{\"pool\":\"p{n}\",\"open\":1}},");
        if out.len() + pool.len() + 2 > limit {
            break;
        }
        out.extend_from_slice(pool.as_bytes());
    }
    out.pop();
    out.extend_from_slice(b"]}");
    out
}

/// A single-pool JSON body whose field holds an array of as many numbers as fit.
pub fn json_array_body(limit: usize) -> Vec<u8> {
    let mut out = b"{\"open\":[".to_vec();
    while out.len() + 4 < limit {
        out.extend_from_slice(b"1,");
    }
    out.pop();
    out.extend_from_slice(b"]}");
    out
}

/// A single-pool JSON body with as many distinct keys as fit.
pub fn json_wide_body(limit: usize) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for n in 0.. {
        let field = format!("\"k{n}\":1,");
        if out.len() + field.len() + 1 > limit {
            break;
        }
        out.extend_from_slice(field.as_bytes());
    }
    out.pop();
    out.push(b'}');
    out
}
