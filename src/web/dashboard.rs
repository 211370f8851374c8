//! The dashboard page: totals, findings blocked per day (SVG drawn here), top senders
//! and trackers, and the recent mails with their findings, searchable with `?q=`.

use super::WebState;
use crate::store::{DayCount, MailRecord, Ranked, Summary, day};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::fmt::Write;
use std::sync::Arc;

/// `?q=...&days=N`
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    q: Option<String>,
    days: Option<u32>,
}

const RECENT: usize = 50;

pub(super) async fn page(State(state): State<Arc<WebState>>, Query(p): Query<Params>) -> Response {
    let days = p.days.unwrap_or(30).clamp(1, 366);
    let q = p.q.unwrap_or_default();
    let q = q.trim();
    let Some(store) = &state.store else {
        return html(
            StatusCode::OK,
            shell("<p>No report store is configured (<code>--report-db</code>).</p>"),
        );
    };
    let until = crate::store::now() + 1;
    let today = until.div_euclid(86_400);
    let since = (today - i64::from(days) + 1) * 86_400;
    let summary = store.summary(since, until, 10).await;
    let recent = store.recent(q, RECENT).await;
    match (summary, recent) {
        (Ok(s), Ok(r)) => html(StatusCode::OK, shell(&body(&s, &r, q, days, today))),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("dashboard: {e}");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                shell("<p>The report store could not be read.</p>"),
            )
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// HTML text and attribute escaping.
pub(super) fn esc(s: &str) -> String {
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

const STYLE: &str = "
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#ffffff;--muted:#57606a;--line:#d0d7de;--bar:#2f6fbf;--bar-light:#a9c6ea;--card:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b3;--line:#30363d;--bar:#58a6ff;--bar-light:#1f3f66;--card:#161b22}}
body{font:15px/1.45 system-ui,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;max-width:1100px;padding:16px}
h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.15em;margin:1.4em 0 .5em}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:1.5em}.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cols{display:flex;flex-wrap:wrap;gap:24px}.cols>section{flex:1 1 320px}
svg text{fill:var(--fg);font-size:11px}svg .bar{fill:var(--bar-light)}svg .known{fill:var(--bar)}svg .axis{stroke:var(--line)}
.swatch{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 .6em;vertical-align:-.05em;border:1px solid var(--bar)}
.swatch.all{background:var(--bar-light)}.swatch.known{background:var(--bar)}
form{margin:.5em 0}input[type=search]{font:inherit;padding:4px 8px;min-width:260px}button{font:inherit;padding:4px 12px}
details summary{cursor:pointer}code{font-size:.9em;word-break:break-all}
";

fn shell(body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>mailveil: reports</title><style>{STYLE}</style></head><body>\
<h1>mailveil: what was blocked</h1>{body}</body></html>"
    )
}

fn body(s: &Summary, recent: &[MailRecord], q: &str, days: u32, today: i64) -> String {
    let t = &s.totals;
    let mut out = String::new();
    let _ = write!(
        out,
        "<p class=\"muted\">The last {days} days (UTC), as recorded by this mailveil.</p>\
<div class=\"cards\" id=\"totals\">\
<div class=\"card\"><b>{}</b>mails</div>\
<div class=\"card\"><b>{}</b>mails cleaned</div>\
<div class=\"card\"><b>{}</b>with trackers</div>\
<div class=\"card\"><b>{}</b>findings blocked</div>\
<div class=\"card\"><b>{}</b>errors</div></div>",
        t.mails, t.mails_cleaned, t.mails_with_trackers, t.blocked, t.errors
    );
    out.push_str("<h2 id=\"chart-heading\">Findings blocked per day</h2>");
    out.push_str(&chart(&s.per_day, days, today));
    out.push_str(LEGEND);
    out.push_str("<div class=\"cols\"><section><h2>Senders that track</h2>");
    out.push_str(&ranked(
        &s.top_senders,
        "sender (From: domain)",
        "top-senders",
    ));
    out.push_str("</section><section><h2>Trackers and ESPs</h2>");
    out.push_str(&ranked(&s.top_trackers, "tracker", "top-trackers"));
    out.push_str("</section></div>");
    let _ = write!(
        out,
        "<h2>Recent mails</h2><form method=\"get\" action=\"/dashboard\" role=\"search\">\
<label>Search <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"sender, domain, tracker, Message-ID\"></label>\
<input type=\"hidden\" name=\"days\" value=\"{days}\"> <button type=\"submit\">Search</button></form>",
        esc(q)
    );
    if recent.is_empty() {
        out.push_str("<p id=\"recent\">No mail matches.</p>");
        return out;
    }
    out.push_str(
        "<table id=\"recent\"><thead><tr><th>time (UTC)</th><th>From: domain, envelope sender</th><th>trackers</th>\
<th class=\"n\">blocked</th><th class=\"n\">size</th><th>findings</th></tr></thead><tbody>",
    );
    for m in recent {
        let trackers = if m.trackers.is_empty() {
            "<span class=\"muted\">none</span>".to_string()
        } else {
            esc(&m.trackers.join(", "))
        };
        let status = match (&m.error, &m.skipped) {
            (Some(e), _) => format!(" <span class=\"muted\">(error: {})</span>", esc(e)),
            (None, Some(s)) => format!(" <span class=\"muted\">(skipped: {})</span>", esc(s)),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr class=\"mail\"><td>{}</td><td>{}<span class=\"muted\">{}</span>{status}</td>\
<td>{trackers}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
            day::datetime_of(m.time),
            m.from_domain
                .as_deref()
                .map(|d| format!("{}<br>", esc(d)))
                .unwrap_or_default(),
            esc(if m.sender.is_empty() { "<>" } else { &m.sender }),
            m.blocked,
            m.size
        );
        if m.findings.is_empty() {
            out.push_str("<span class=\"muted\">none</span>");
        } else {
            let _ = write!(
                out,
                "<details><summary>{} finding{}</summary><ul>",
                m.findings.len(),
                if m.findings.len() == 1 { "" } else { "s" }
            );
            for f in &m.findings {
                let _ = write!(
                    out,
                    "<li>{} {} <span class=\"muted\">{} in part {}</span>{}{}</li>",
                    esc(&f.action),
                    esc(&f.kind),
                    esc(&f.location),
                    esc(&f.part),
                    f.tracker
                        .as_deref()
                        .map(|t| format!(" ({})", esc(t)))
                        .unwrap_or_default(),
                    f.url
                        .as_deref()
                        .map(|u| format!("<br><code>{}</code>", esc(u)))
                        .unwrap_or_default()
                );
            }
            out.push_str("</ul></details>");
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
    out
}

fn ranked(rows: &[Ranked], what: &str, id: &str) -> String {
    if rows.is_empty() {
        return format!("<p id=\"{id}\" class=\"muted\">None in this period.</p>");
    }
    let mut out = format!(
        "<table id=\"{id}\"><thead><tr><th>{what}</th><th class=\"n\">mails</th>\
<th class=\"n\">blocked</th></tr></thead><tbody>"
    );
    for r in rows {
        let name = if r.name.is_empty() { "(none)" } else { &r.name };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(name),
            r.mails,
            r.blocked
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// What the chart counts, in the words of docs/reports.md: "blocked" is every finding
/// acted on, the number the `X-Mailveil` header and the totals give.
const LEGEND: &str = "<p id=\"chart-legend\" class=\"muted\">\
<span class=\"swatch all\"></span>findings blocked: tracking pixels and recipient tokens \
stripped, links unwrapped or cleaned of tracking parameters \
<span class=\"swatch known\"></span>of them, from a known tracker or ESP</p>";

/// A bar chart of the findings blocked per day (every day of the period, zeros too):
/// each bar is that day's findings blocked, its darker part those of a known tracker.
fn chart(per_day: &[DayCount], days: u32, today: i64) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 40.0;
    const BOTTOM: f64 = 24.0;
    const TOP: f64 = 12.0;
    let first = today - i64::from(days) + 1;
    let values: Vec<(i64, i64, i64)> = (first..=today)
        .map(|d| {
            let date = day::date_of(d * 86_400);
            per_day
                .iter()
                .find(|c| c.date == date)
                .map_or((d, 0, 0), |c| (d, c.blocked, c.trackers))
        })
        .collect();
    let max = values.iter().map(|v| v.1).max().unwrap_or(0).max(1);
    let total: i64 = values.iter().map(|v| v.1).sum();
    let known: i64 = values.iter().map(|v| v.2).sum();
    let slot = (W - LEFT) / values.len() as f64;
    let mut out = format!(
        "<svg id=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"100%\" height=\"{H}\" role=\"img\" \
aria-labelledby=\"chart-title\" xmlns=\"http://www.w3.org/2000/svg\">\
<title id=\"chart-title\">Findings blocked per day over the last {days} days: {total} in all \
({known} from known trackers), at most {max} a day</title>\
<line class=\"axis\" x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{W}\" y2=\"{y0}\"/>\
<text x=\"12\" y=\"{ymid}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {ymid})\">findings blocked</text>\
<text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
<text x=\"{tx}\" y=\"{y0}\" text-anchor=\"end\">0</text>",
        y0 = H - BOTTOM,
        tx = LEFT - 6.0,
        ty = TOP + 10.0,
        ymid = (H - BOTTOM + TOP) / 2.0,
    );
    let label_every = (values.len() / 8).max(1);
    for (i, (d, blocked, trackers)) in values.iter().enumerate() {
        let scale = |n: i64| (H - BOTTOM - TOP) * (n as f64) / (max as f64);
        let (h, hk) = (scale(*blocked), scale((*trackers).min(*blocked)));
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let date = day::date_of(d * 86_400);
        let _ = write!(
            out,
            "<g><title>{date}: {blocked} findings blocked, {trackers} of them from known trackers</title>\
<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"/>\
<rect class=\"known\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{hk:.1}\"/></g>",
            H - BOTTOM - h,
            H - BOTTOM - hk,
            w = slot * 0.7
        );
        if i % label_every == 0 || i + 1 == values.len() {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                H - 6.0,
                &date[5..]
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_per_day_and_escapes_nothing_it_should_not() {
        let today = 20_000;
        let per_day = vec![DayCount {
            date: day::date_of(today * 86_400),
            mails: 2,
            blocked: 5,
            trackers: 3,
        }];
        let svg = chart(&per_day, 7, today);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 7);
        assert!(svg.contains("5 findings blocked, 3 of them from known trackers"));
        assert_eq!(esc("<a href=\"x\">'"), "&lt;a href=&quot;x&quot;&gt;&#39;");
    }

    /// Issue 15: the heading said "Trackers blocked per day" over bars of every finding
    /// blocked (link parameters too). Bars are findings blocked, as the totals count
    /// them; the part from known trackers is drawn inside, and the axis and legend say so.
    #[test]
    fn the_chart_says_what_it_counts_and_shows_the_known_trackers_part() {
        let today = 20_000;
        let per_day = vec![DayCount {
            date: day::date_of(today * 86_400),
            mails: 2,
            blocked: 8,
            trackers: 2,
        }];
        let page = body(
            &Summary {
                per_day: per_day.clone(),
                ..Summary::default()
            },
            &[],
            "",
            7,
            today,
        );
        assert!(page.contains("<h2 id=\"chart-heading\">Findings blocked per day</h2>"));
        assert!(!page.contains("Trackers blocked per day"));
        assert!(page.contains("findings blocked: tracking pixels"), "{page}");
        assert!(page.contains("of them, from a known tracker or ESP"));
        let svg = chart(&per_day, 7, today);
        assert!(svg.contains(">findings blocked</text>"), "the axis says it");
        // Today's bar is full height (8 is the most); its known part a quarter of it.
        let last_bar = svg.rsplit("<rect class=\"bar\"").next().unwrap_or("");
        assert!(last_bar.contains("height=\"184.0\""), "{last_bar}");
        assert!(last_bar.contains("class=\"known\"") && last_bar.contains("height=\"46.0\""));
    }
}
