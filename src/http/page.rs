//! `GET /` on the metrics listener: the on-call view, one HTML page rendered on the server
//! from the latest analysis report (no JavaScript, no build step), refreshing itself. It is
//! what someone sees after `kubectl port-forward`: each application with its verdict and
//! reasons, its pool, server and socket counts, growth and time to exhaustion, and its
//! stuck connections with their query fingerprints; applications suspected of leaking first.
//!
//! Owns the page's markup only. It reads [`crate::analysis::Findings`] as the analysis made them: reasons
//! are shown by their own names ([`crate::analysis::Reason::as_str`],
//! [`crate::analysis::StuckReason::as_str`]), so a new reason shows up without a change
//! here. Every text that came from outside (application and pool names, queries,
//! addresses) is HTML-escaped.

use std::fmt::Write;

use crate::analysis::{AppFinding, AppKey, StuckBackend};
use crate::cli::age;
use crate::tick::Report;

/// Seconds between the page's own reloads (`<meta http-equiv="refresh">`).
pub const REFRESH_SECONDS: u32 = 10;

/// `s` with `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#1d2329;background:#f6f7f9}\
header{display:flex;gap:1.5em;align-items:baseline;flex-wrap:wrap;border-bottom:1px solid #d5d9de;padding:.8em 0}\
h1{font-size:20px;margin:0}h2{font-size:17px;margin:0}.muted{color:#5f6b76}\
section{background:#fff;border:1px solid #d5d9de;border-left:6px solid #2e9e5b;border-radius:4px;margin:1em 0;padding:.8em 1em}\
section.leak{border-left-color:#d1333c}\
.verdict{font-weight:600;padding:.1em .5em;border-radius:3px;margin-left:.6em;font-size:13px}\
.ok{background:#e3f4e9;color:#1c6b3c}.bad{background:#fbe3e4;color:#a4232b}\
.reasons{margin:.4em 0}.reasons code{background:#fbe3e4;color:#a4232b;padding:.1em .4em;border-radius:3px;margin-right:.4em}\
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5em,1fr));gap:.3em 1em;margin:.6em 0}\
dt{color:#5f6b76;font-size:12px}dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}\
table{border-collapse:collapse;width:100%;margin-top:.5em;font-size:13px}\
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #e6e9ec;vertical-align:top}\
th{color:#5f6b76;font-weight:500}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}\
td code{white-space:pre-wrap;word-break:break-word}footer{margin-top:2em;font-size:12px}";

/// The whole page for `report`, rendered at `now_unix`.
pub fn render(report: &Report, now_unix: f64) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let version = crate::VERSION;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>poolwatch{}</title><style>{STYLE}</style></head><body>\n<header><h1>poolwatch</h1>",
        if report.instance.is_empty() {
            String::new()
        } else {
            format!(" · {}", escape(&report.instance))
        }
    );
    let Some(findings) = &report.findings else {
        let _ = write!(
            h,
            "<span class=\"muted\">{version}</span></header>\n<p>No analysis yet: the first \
tick has not run. This page reloads every {REFRESH_SECONDS} s.</p>"
        );
        footer(&mut h);
        return h;
    };
    let suspected = findings.apps.values().filter(|f| f.leak_suspected).count();
    let _ = write!(
        h,
        "<span class=\"muted\">{version}{}</span><span>{} application{} · <b>{suspected} leak{} suspected</b></span>",
        if report.instance.is_empty() {
            String::new()
        } else {
            format!(" · instance {}", escape(&report.instance))
        },
        findings.apps.len(),
        plural(findings.apps.len()),
        plural(suspected),
    );
    if let (Some(total), Some(usable)) = (
        findings.server_connections_total,
        findings.server_usable_connections,
    ) {
        let _ = write!(
            h,
            "<span>server: {total} of {usable} usable connections</span>"
        );
    }
    let _ = writeln!(
        h,
        "<span class=\"muted\">analysis {} ago · reloads every {REFRESH_SECONDS} s</span></header>",
        age(Some(now_unix - findings.at_unix))
    );
    if findings.apps.is_empty() {
        h.push_str("<p>No application seen yet: none has pushed pool statistics, and the server view attributes no connection to one.</p>\n");
    }
    // Suspected leaks first, then by name.
    let mut apps: Vec<(&AppKey, &AppFinding)> = findings.apps.iter().collect();
    apps.sort_by_key(|(k, f)| (!f.leak_suspected, (*k).clone()));
    for (key, finding) in apps {
        let stuck = findings.stuck.get(key).map(Vec::as_slice).unwrap_or(&[]);
        application(&mut h, key, finding, stuck);
    }
    if let Some(sockets) = report.sockets.as_ref().filter(|s| !s.is_empty()) {
        h.push_str("<section><h2>This pod's sockets to the database</h2><table><tr><th>peer</th><th>state</th><th>connections</th></tr>");
        for peer in sockets {
            for (state, n) in &peer.states {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{state}</td><td class=\"num\">{n}</td></tr>",
                    escape(&peer.peer)
                );
            }
        }
        h.push_str("</table></section>\n");
    }
    footer(&mut h);
    h
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn footer(h: &mut String) {
    h.push_str(
        "<footer class=\"muted\">GET <a href=\"/metrics\">/metrics</a> · \
<a href=\"/api/v1/connections\">/api/v1/connections</a> (JSON; <code>poolwatch connections</code> \
prints it as a table) · <a href=\"/healthz\">/healthz</a> · <a href=\"/readyz\">/readyz</a></footer>\n\
</body></html>\n",
    );
}

fn count(v: Option<u64>) -> String {
    v.map_or("–".into(), |n| n.to_string())
}

fn application(h: &mut String, key: &AppKey, f: &AppFinding, stuck: &[StuckBackend]) {
    let (class, verdict) = if f.leak_suspected {
        (
            " class=\"leak\"",
            "<span class=\"verdict bad\">leak suspected</span>",
        )
    } else {
        ("", "<span class=\"verdict ok\">ok</span>")
    };
    let _ = write!(h, "<section{class}><h2>{}", escape(&key.app));
    if !key.instance.is_empty() {
        let _ = write!(h, " <span class=\"muted\">{}</span>", escape(&key.instance));
    }
    let _ = write!(h, "{verdict}</h2>");
    if !f.reasons.is_empty() {
        h.push_str("<div class=\"reasons\">why: ");
        for r in &f.reasons {
            let _ = write!(h, "<code>{}</code>", r.as_str());
        }
        h.push_str("</div>");
    }
    let growth = f
        .growth_per_second
        .map_or("–".into(), |g| format!("{:+.2}/min", g * 60.0));
    let eta = |s: Option<f64>| s.map_or("–".into(), |s| age(Some(s)));
    let pool = match (f.pool_in_use_connections, f.pool_open_connections) {
        (None, None) => "–".to_string(),
        (in_use, open) => format!("{} in use / {} open", count(in_use), count(open)),
    };
    let exhausted = if f.exhausted { " (exhausted)" } else { "" };
    let _ = write!(
        h,
        "<dl><div><dt>pool</dt><dd>{pool}{exhausted}</dd></div>\
<div><dt>pool max</dt><dd>{}</dd></div>\
<div><dt>server</dt><dd>{}</dd></div>\
<div><dt>socket</dt><dd>{}</dd></div>\
<div><dt>stuck</dt><dd>{}</dd></div>\
<div><dt>unaccounted</dt><dd>{}</dd></div>\
<div><dt>checked out, idle</dt><dd>{}</dd></div>\
<div><dt>past max lifetime</dt><dd>{}</dd></div>\
<div><dt>growth</dt><dd>{growth}</dd></div>\
<div><dt>pool full in</dt><dd>{}</dd></div>\
<div><dt>{} full in</dt><dd>{}</dd></div></dl>",
        count(f.pool_max_open_connections),
        count(f.server_connections),
        count(f.socket_connections),
        count(f.stuck_connections),
        count(f.unaccounted),
        count(f.idle_in_use),
        count(f.over_max_lifetime),
        eta(f.eta_pool_seconds),
        // The server-side limit reached first: the server's, the role's or the database's.
        f.eta_server_limit.as_str(),
        eta(f.eta_server_seconds),
    );
    if !stuck.is_empty() {
        h.push_str("<table><tr><th>pid</th><th>state</th><th>for</th><th>wait event</th><th>backend age</th><th>transaction age</th><th>client</th><th>why</th><th>query</th></tr>");
        for s in stuck {
            let b = &s.backend;
            let wait = match (b.wait_event_type.as_str(), b.wait_event.as_str()) {
                ("", "") => "–".to_string(),
                ("", e) => escape(e),
                (t, e) => format!("{}:{}", escape(t), escape(e)),
            };
            let reasons: Vec<&str> = s.reasons.iter().map(|r| r.as_str()).collect();
            let _ = write!(
                h,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{wait}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                b.pid,
                escape(&b.state),
                age(b.state_age),
                age(b.backend_age),
                age(b.xact_age),
                escape(&b.client_addr),
                reasons.join(", "),
                escape(&b.query),
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Findings, Reason, StuckReason};
    use crate::sampler::activity::Backend;

    fn finding(leak: bool) -> AppFinding {
        AppFinding {
            server_connections: Some(26),
            socket_connections: None,
            pool_open_connections: Some(27),
            pool_in_use_connections: Some(27),
            pool_max_open_connections: Some(50),
            connections: 27,
            unaccounted: Some(0),
            idle_in_use: Some(16),
            stuck_connections: Some(16),
            stuck_connection_seconds: Some(1200.0),
            over_max_lifetime: Some(0),
            exhausted: false,
            growth_per_second: Some(0.5),
            eta_pool_seconds: Some(48.0),
            eta_server_seconds: None,
            eta_server_limit: crate::analysis::ServerLimit::Server,
            leak_suspected: leak,
            reasons: if leak {
                vec![Reason::IdleInUse]
            } else {
                vec![]
            },
            pools: vec![],
        }
    }

    #[test]
    fn the_page_shows_verdicts_counts_and_stuck_connections_escaped() {
        let leaking = AppKey::new("orders-<worker>", "");
        let fine = AppKey::new("billing", "");
        let backend = Backend {
            pid: 4242,
            state: "idle".into(),
            wait_event_type: "Client".into(),
            wait_event: "ClientRead".into(),
            state_age: Some(725.0),
            backend_age: Some(800.0),
            query: "SELECT 1 WHERE a < $1 AND b = '<script>alert(1)</script>'".into(),
            ..Backend::default()
        };
        let findings = Findings {
            at_unix: 1000.0,
            apps: [
                (fine.clone(), finding(false)),
                (leaking.clone(), finding(true)),
            ]
            .into(),
            stuck: [(
                leaking,
                vec![StuckBackend {
                    backend,
                    reasons: vec![StuckReason::IdleInClientRead],
                }],
            )]
            .into(),
            server_connections_total: Some(30),
            server_usable_connections: Some(97),
            ..Findings::default()
        };
        let report = Report {
            findings: Some(findings),
            instance: "pod-a".into(),
            ..Report::default()
        };
        let page = render(&report, 1003.0);
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(!page.contains("<script"), "{page}");
        for wanted in [
            "orders-&lt;worker&gt;",
            "leak suspected</span>",
            "<code>idle_in_use</code>",
            "&#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;",
            "Client:ClientRead",
            "12m05s",
            "idle_in_client_read",
            "27 in use / 27 open",
            "+30.00/min",
            "48s",
            "server: 30 of 97 usable connections",
            "analysis 3s ago",
            "1 leak suspected",
        ] {
            assert!(page.contains(wanted), "{wanted}:\n{page}");
        }
        // The suspected leak comes first although "billing" sorts before it.
        assert!(page.find("orders-&lt;worker&gt;") < page.find("billing"));
        let empty = render(&Report::default(), 0.0);
        assert!(empty.contains("No analysis yet"), "{empty}");
    }
}
