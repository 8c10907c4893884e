//! The HTML capacity report: one self-contained file (inline CSS and SVG,
//! no script, no external asset).

use std::fmt::Write;

use crate::api::pb;

/// What the page shows.
pub struct Page<'a> {
    pub title: &'a str,
    pub report: &'a pb::CapacityReport,
    pub by_namespace: &'a [pb::CapacityGroup],
    pub by_type: &'a [pb::CapacityGroup],
    pub largest: &'a [pb::CapacityGroup],
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

use super::output::size as human;

fn signed(n: i64) -> String {
    match n {
        n if n < 0 => format!("−{}", human(n.unsigned_abs())),
        n => format!("+{}", human(n as u64)),
    }
}

const W: f64 = 760.0;
const COLORS: [&str; 3] = ["#2b6cb0", "#dd6b20", "#38a169"];

/// Horizontal bars: one row per label, one bar per series.
fn bars(rows: &[(String, Vec<u64>)], series: &[&str]) -> String {
    let max = rows.iter().flat_map(|r| r.1.iter().copied()).max().unwrap_or(0).max(1) as f64;
    let row_h = 14.0 * series.len() as f64 + 10.0;
    let h = 24.0 + row_h * rows.len() as f64;
    let mut s = format!(r#"<svg width="{W}" height="{h}" role="img">"#);
    for (i, name) in series.iter().enumerate() {
        let x = 180.0 + i as f64 * 160.0;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="4" width="10" height="10" fill="{}"/><text x="{}" y="13" font-size="11">{}</text>"#,
            COLORS[i % 3],
            x + 14.0,
            esc(name)
        );
    }
    for (r, (label, values)) in rows.iter().enumerate() {
        let y0 = 24.0 + r as f64 * row_h;
        let _ = write!(
            s,
            r#"<text x="0" y="{}" font-size="12">{}</text>"#,
            y0 + 12.0,
            esc(&truncate(label, 26))
        );
        for (i, v) in values.iter().enumerate() {
            let w = (*v as f64 / max * (W - 300.0)).max(1.0);
            let y = y0 + i as f64 * 14.0;
            let _ = write!(
                s,
                r#"<rect x="180" y="{y}" width="{w:.1}" height="12" fill="{}"/><text x="{:.1}" y="{}" font-size="11">{}</text>"#,
                COLORS[i % 3],
                184.0 + w,
                y + 10.0,
                human(*v)
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Lines over days: one per series.
/// A named series of a line chart: how to read its value off a day.
type Series<'a> = (&'a str, fn(&pb::DayUsage) -> u64);

fn lines(days: &[pb::DayUsage], series: &[Series<'_>]) -> String {
    let h = 220.0;
    let (left, bottom) = (70.0, 30.0);
    let mut s = format!(r#"<svg width="{W}" height="{h}" role="img">"#);
    if days.is_empty() {
        s.push_str(r#"<text x="10" y="20" font-size="12">No daily snapshot yet.</text></svg>"#);
        return s;
    }
    let max = days
        .iter()
        .flat_map(|d| series.iter().map(move |(_, f)| f(d)))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (first, last) = (days[0].day, days[days.len() - 1].day);
    let span = (last - first).max(1) as f64;
    let x = |day: u64| left + (day - first) as f64 / span * (W - left - 20.0);
    let y = |v: u64| h - bottom - v as f64 / max * (h - bottom - 20.0);
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#999"/><text x="0" y="{}" font-size="11">{}</text><text x="0" y="{}" font-size="11">0</text>"##,
        h - bottom,
        W - 20.0,
        h - bottom,
        y(max as u64) + 4.0,
        human(max as u64),
        h - bottom
    );
    for (i, (name, f)) in series.iter().enumerate() {
        let pts: Vec<String> = days.iter().map(|d| format!("{:.1},{:.1}", x(d.day), y(f(d)))).collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" "),
            c = COLORS[i % 3]
        );
        for d in days {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                x(d.day),
                y(f(d)),
                COLORS[i % 3]
            );
        }
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            left + 10.0 + i as f64 * 160.0,
            h - 14.0,
            COLORS[i % 3],
            left + 24.0 + i as f64 * 160.0,
            h - 5.0,
            esc(name)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{} days</text>"#,
        W - 20.0,
        h - 5.0,
        last - first + 1
    );
    s.push_str("</svg>");
    s
}

pub fn render(p: &Page<'_>) -> String {
    let s = p.report.summary.unwrap_or_default();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:sans-serif;margin:24px;color:#1a202c;max-width:980px}} h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{padding:3px 10px;border-bottom:1px solid #e2e8f0;text-align:right}}
td:first-child,th:first-child{{text-align:left}} .cards{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #e2e8f0;border-radius:6px;padding:8px 14px;min-width:150px}} .card b{{display:block;font-size:18px}}
</style></head><body><h1>{title}</h1>"#,
        title = esc(p.title)
    );
    let saved = s.artifacts_bytes.saturating_sub(s.physical_bytes);
    let cards = [
        (
            "Artifacts",
            format!("{} files", s.artifacts_count),
            human(s.artifacts_bytes),
        ),
        (
            "Binaries",
            format!("{} blobs", s.binaries_count),
            human(s.binaries_bytes),
        ),
        ("Stored", format!("{} packs", s.packs), human(s.physical_bytes)),
        (
            "Optimization",
            format!("{} saved", human(saved)),
            format!("{:.1}%", s.optimization_percent),
        ),
        ("Trash", "restorable".into(), human(s.trash_bytes)),
        (
            "Awaiting GC",
            format!("{:.1}% of packs dead", s.fragmentation * 100.0),
            human(s.condemned_bytes + s.dead_bytes),
        ),
        (
            "Free disk",
            "data dir".into(),
            s.free_disk_bytes.map(human).unwrap_or_else(|| "unknown".into()),
        ),
    ];
    h.push_str(r#"<div class="cards">"#);
    for (name, sub, big) in cards {
        let _ = write!(
            h,
            r#"<div class="card">{}<b>{}</b><small>{}</small></div>"#,
            esc(name),
            esc(&big),
            esc(&sub)
        );
    }
    h.push_str("</div>");
    let r = p.report;
    h.push_str("<h2>Usage over time</h2>");
    h.push_str(&lines(
        &r.days,
        &[
            ("file bytes (logical)", |d| d.file_bytes),
            ("stored (physical)", |d| d.physical_bytes),
        ],
    ));
    let g = |g: &Option<pb::Growth>, n: u64| match g {
        Some(g) if g.since_day.is_some() => format!(
            "{n} days: files {}, stored {}",
            signed(g.file_bytes),
            signed(g.physical_bytes)
        ),
        _ => format!("{n} days: no snapshot that old yet"),
    };
    let _ = write!(
        h,
        "<p>Growth over {}; {}.</p>",
        esc(&g(&r.growth_30d, 30)),
        esc(&g(&r.growth_90d, 90))
    );
    h.push_str("<h2>Dedup and compression savings</h2>");
    h.push_str(&bars(
        &[(
            "whole store".into(),
            vec![s.artifacts_bytes, s.binaries_bytes, s.physical_bytes],
        )],
        &["files (logical)", "after dedup (unique)", "stored (compressed)"],
    ));
    h.push_str("<h2>By namespace: stored bytes, exclusive and shared</h2>");
    let ns_rows: Vec<_> = p
        .by_namespace
        .iter()
        .map(|g| (g.key.clone(), vec![g.exclusive_bytes, g.shared_bytes]))
        .collect();
    h.push_str(&bars(&ns_rows, &["exclusive (freed if deleted)", "shared with others"]));
    h.push_str("<h2>By package type</h2>");
    let ty_rows: Vec<_> = p
        .by_type
        .iter()
        .map(|g| (g.key.clone(), vec![g.logical_bytes, g.physical_bytes]))
        .collect();
    h.push_str(&bars(&ty_rows, &["files (logical)", "stored (physical)"]));
    h.push_str("<h2>Largest packages</h2><table><tr><th>package</th><th>files</th><th>logical</th><th>stored</th><th>exclusive</th><th>shared</th><th>trash</th></tr>");
    for g in p.largest {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.key),
            g.files,
            human(g.logical_bytes),
            human(g.physical_bytes),
            human(g.exclusive_bytes),
            human(g.shared_bytes),
            human(g.trash_bytes)
        );
    }
    h.push_str("</table><h2>Fastest-growing packages (30 days)</h2><table><tr><th>package</th><th>bytes</th><th>growth</th></tr>");
    for f in &r.fastest_growing {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.package),
            human(f.bytes),
            signed(f.growth_30d)
        );
    }
    let _ = writeln!(
        h,
        "</table><p><small>Computed in {} ms.</small></p></body></html>",
        r.elapsed_ms
    );
    h
}
