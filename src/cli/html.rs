//! The HTML capacity report: one self-contained file (inline CSS and SVG,
//! no script, no external asset). A namespace's or a project's report
//! shows that scope's figures in every card, chart and table; a section
//! that has no meaning there says so instead.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use crate::api::pb;

/// What the report covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    Store,
    Namespace(&'a str),
    Project(&'a str, &'a str),
}

impl Scope<'_> {
    /// What the scope is made of, in the breakdown section.
    fn parts(&self) -> (&'static str, &'static str) {
        match self {
            Scope::Store => ("namespace", "namespaces"),
            Scope::Namespace(_) => ("project", "projects"),
            Scope::Project(..) => ("package", "packages"),
        }
    }

    fn name(&self) -> String {
        match self {
            Scope::Store => "the whole store".into(),
            Scope::Namespace(n) => format!("namespace {n}"),
            Scope::Project(n, p) => format!("project {n}/{p}"),
        }
    }
}

/// What the page shows.
pub struct Page<'a> {
    pub title: &'a str,
    pub scope: Scope<'a>,
    /// Trends, status, what could be freed, and the store's summary.
    pub report: &'a pb::CapacityReport,
    /// The scope's own figures (None: the whole store, from the summary).
    pub scoped: Option<&'a pb::CapacityGroup>,
    /// The groups the scope is made of: namespaces, projects or packages.
    pub parts: &'a [pb::CapacityGroup],
    /// By package type; None where types are not counted (one project).
    pub by_type: Option<&'a [pb::CapacityGroup]>,
    /// The scope's packages, largest stored first.
    pub packages: &'a [pb::CapacityGroup],
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

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date(day: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(day.min(1 << 40) * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

/// `YYYY-MM-DD HH:MM UTC` of Unix ms.
fn when(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} {} UTC", &s[..10], &s[11..16])
}

fn span(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn percent(part: u64, total: u64) -> String {
    match total {
        0 => "–".into(),
        t => format!("{:.1}%", part as f64 * 100.0 / t as f64),
    }
}

const W: f64 = 760.0;
/// Series colours of the bar and line charts.
pub const COLORS: [&str; 3] = ["#2b6cb0", "#dd6b20", "#38a169"];
/// Namespace colours of the treemap (apart from the series colours).
pub const TREE: [&str; 6] = ["#4c51bf", "#c05621", "#2f855a", "#b83280", "#2c7a7b", "#975a16"];

/// Horizontal bars: one row per label, one bar per series.
fn bars(rows: &[(String, Vec<u64>)], series: &[&str]) -> String {
    let max = rows.iter().flat_map(|r| r.1.iter().copied()).max().unwrap_or(0).max(1) as f64;
    let row_h = 14.0 * series.len() as f64 + 10.0;
    let h = 24.0 + row_h * rows.len() as f64;
    let mut s = format!(r#"<svg width="{W}" height="{h}" role="img">"#);
    for (i, name) in series.iter().enumerate() {
        let x = 180.0 + i as f64 * 180.0;
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

/// A named series of a line chart: how to read its value off a day.
type Series<'a> = (&'a str, fn(&pb::DayUsage) -> u64);

/// Lines over days, one per series, on a dated axis.
fn lines(days: &[pb::DayUsage], series: &[Series<'_>]) -> String {
    let h = 240.0;
    let (left, bottom) = (70.0, 46.0);
    let mut s = format!(r#"<svg width="{W}" height="{h}" role="img">"#);
    let max = days
        .iter()
        .flat_map(|d| series.iter().map(move |(_, f)| f(d)))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (first, last) = (days[0].day, days[days.len() - 1].day);
    let span = (last - first).max(1) as f64;
    let x = |day: u64| left + (day - first) as f64 / span * (W - left - 40.0);
    let y = |v: u64| h - bottom - v as f64 / max * (h - bottom - 20.0);
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#999"/><text x="0" y="{}" font-size="11">{}</text><text x="0" y="{}" font-size="11">0</text>"##,
        h - bottom,
        W - 40.0,
        h - bottom,
        y(max as u64) + 4.0,
        human(max as u64),
        h - bottom
    );
    // Up to six dated ticks, evenly spread, first and last included.
    let n = (last - first).min(5);
    let mut ticks: Vec<u64> = (0..=n).map(|i| first + (last - first) * i / n.max(1)).collect();
    ticks.dedup();
    for d in ticks {
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#999"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            h - bottom,
            h - bottom + 4.0,
            h - bottom + 16.0,
            date(d),
            x = x(d)
        );
    }
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
            left + 10.0 + i as f64 * 180.0,
            h - 16.0,
            COLORS[i % 3],
            left + 24.0 + i as f64 * 180.0,
            h - 7.0,
            esc(name)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{} snapshots over {} days</text>"#,
        W - 40.0,
        h - 7.0,
        days.len(),
        last - first + 1
    );
    s.push_str("</svg>");
    s
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// Squarified treemap layout (Bruls, Huizing, van Wijk): one rectangle of
/// `r` per weight, in order, each of area proportional to its weight.
/// `weights` must be positive and largest first.
fn squarify(weights: &[f64], mut r: Rect) -> Vec<Rect> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let scale = r.w * r.h / total;
    let areas: Vec<f64> = weights.iter().map(|w| w * scale).collect();
    let worst = |row: &[f64], side: f64| {
        let s: f64 = row.iter().sum();
        let (mx, mn) = row.iter().fold((0f64, f64::MAX), |(mx, mn), &a| (mx.max(a), mn.min(a)));
        (side * side * mx / (s * s)).max(s * s / (side * side * mn))
    };
    let mut out = Vec::with_capacity(areas.len());
    let mut i = 0;
    while i < areas.len() {
        let side = r.w.min(r.h).max(1e-9);
        let mut j = i + 1;
        while j < areas.len() && worst(&areas[i..=j], side) <= worst(&areas[i..j], side) {
            j += 1;
        }
        let row = &areas[i..j];
        let thick = row.iter().sum::<f64>() / side;
        let mut off = 0.0;
        for a in row {
            let len = a / thick;
            if r.w >= r.h {
                out.push(Rect {
                    x: r.x,
                    y: r.y + off,
                    w: thick,
                    h: len,
                });
            } else {
                out.push(Rect {
                    x: r.x + off,
                    y: r.y,
                    w: len,
                    h: thick,
                });
            }
            off += len;
        }
        if r.w >= r.h {
            r.x += thick;
            r.w -= thick;
        } else {
            r.y += thick;
            r.h -= thick;
        }
        i = j;
    }
    out
}

/// A tree of stored bytes: namespace → project → package.
type Tree<'a> = Vec<(&'a str, u64, Vec<(&'a str, u64, Vec<(&'a str, u64)>)>)>;

/// Groups package keys (`ns/project/type:name`) into the treemap's tree,
/// largest first at every level; packages storing nothing are left out.
fn tree(packages: &[pb::CapacityGroup]) -> Tree<'_> {
    let mut t: Tree<'_> = Vec::new();
    for g in packages.iter().filter(|g| g.physical_bytes > 0) {
        let mut parts = g.key.splitn(3, '/');
        let (Some(ns), Some(pr), Some(pkg)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let n = match t.iter().position(|e| e.0 == ns) {
            Some(i) => i,
            None => {
                t.push((ns, 0, Vec::new()));
                t.len() - 1
            }
        };
        let node = &mut t[n];
        node.1 += g.physical_bytes;
        let p = match node.2.iter().position(|e| e.0 == pr) {
            Some(i) => i,
            None => {
                node.2.push((pr, 0, Vec::new()));
                node.2.len() - 1
            }
        };
        node.2[p].1 += g.physical_bytes;
        node.2[p].2.push((pkg, g.physical_bytes));
    }
    t.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for n in &mut t {
        n.2.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for p in &mut n.2 {
            p.2.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        }
    }
    t
}

fn label(s: &mut String, r: Rect, text: &str, bold: bool) {
    let chars = ((r.w - 6.0) / 6.6) as usize;
    if r.h < 15.0 || chars < 3 {
        return;
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#fff"{}>{}</text>"##,
        r.x + 3.0,
        r.y + 12.0,
        if bold { r#" font-weight="bold""# } else { "" },
        esc(&truncate(text, chars))
    );
}

/// The treemap: a namespace's colour for each of its packages, projects
/// framed inside it, every rectangle titled with its name and size.
fn treemap(packages: &[pb::CapacityGroup]) -> String {
    let (w, h) = (W, 360.0);
    let mut s = format!(r#"<svg width="{w}" height="{h}" role="img">"#);
    let t = tree(packages);
    let area = Rect { x: 0.0, y: 0.0, w, h };
    let weights: Vec<f64> = t.iter().map(|n| n.1 as f64).collect();
    for (i, ((ns, ns_bytes, projects), nr)) in t.iter().zip(squarify(&weights, area)).enumerate() {
        let c = TREE[i % TREE.len()];
        let _ = write!(
            s,
            r##"<g><title>{} — {}</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{c}" stroke="#fff" stroke-width="3"/></g>"##,
            esc(ns),
            human(*ns_bytes),
            nr.x,
            nr.y,
            nr.w,
            nr.h
        );
        // A header strip for the namespace's name when there is room.
        let head = if nr.h > 60.0 && nr.w > 60.0 { 16.0 } else { 0.0 };
        label(
            &mut s,
            Rect { h: 16.0, ..nr },
            &format!("{ns} {}", human(*ns_bytes)),
            true,
        );
        let inner = Rect {
            x: nr.x + 2.0,
            y: nr.y + head + 1.0,
            w: (nr.w - 4.0).max(0.0),
            h: (nr.h - head - 3.0).max(0.0),
        };
        let weights: Vec<f64> = projects.iter().map(|p| p.1 as f64).collect();
        for ((pr, pr_bytes, pkgs), prr) in projects.iter().zip(squarify(&weights, inner)) {
            let weights: Vec<f64> = pkgs.iter().map(|p| p.1 as f64).collect();
            for ((pkg, bytes), r) in pkgs.iter().zip(squarify(&weights, prr)) {
                let _ = write!(
                    s,
                    r##"<g><title>{}/{}/{} — {}</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{c}" stroke="#fff" stroke-width="0.5"/></g>"##,
                    esc(ns),
                    esc(pr),
                    esc(pkg),
                    human(*bytes),
                    r.x,
                    r.y,
                    r.w,
                    r.h
                );
                label(&mut s, r, pkg, false);
            }
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#fff" stroke-width="2"><title>{}/{} — {}</title></rect>"##,
                prr.x,
                prr.y,
                prr.w,
                prr.h,
                esc(ns),
                esc(pr),
                human(*pr_bytes)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A table, or a plain sentence when it has no row.
fn table(h: &mut String, header: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        let _ = write!(h, r#"<p class="empty">{}</p>"#, esc(empty));
        return;
    }
    h.push_str("<table><tr>");
    for c in header {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{}</td>", esc(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn cards(h: &mut String, cards: &[(&str, String, String)]) {
    h.push_str(r#"<div class="cards">"#);
    for (name, big, sub) in cards {
        let _ = write!(
            h,
            r#"<div class="card">{}<b>{}</b><small>{}</small></div>"#,
            esc(name),
            esc(big),
            esc(sub)
        );
    }
    h.push_str("</div>");
}

/// Who made the report and when.
fn provenance(r: &pb::CapacityReport) -> String {
    let d = r.daemon.clone().unwrap_or_default();
    let mut s = format!("Generated {} by stowage {}", when(r.generated_ms), d.version);
    if !d.host.is_empty() {
        let _ = write!(s, " on {}", d.host);
    }
    if !d.data_dir.is_empty() {
        let _ = write!(s, ", data dir {}", d.data_dir);
    }
    if d.started_ms > 0 {
        let _ = write!(s, ", running since {}", when(d.started_ms));
    }
    s + "."
}

/// The scope's cards: the store's summary, or the scope's own group.
fn scope_cards(h: &mut String, p: &Page<'_>) {
    match p.scoped {
        None => {
            let s = p.report.summary.unwrap_or_default();
            let saved = s.artifacts_bytes.saturating_sub(s.physical_bytes);
            cards(
                h,
                &[
                    (
                        "Artifacts",
                        human(s.artifacts_bytes),
                        format!("{} files", s.artifacts_count),
                    ),
                    (
                        "Binaries",
                        human(s.binaries_bytes),
                        format!("{} blobs", s.binaries_count),
                    ),
                    ("Stored", human(s.physical_bytes), format!("{} packs", s.packs)),
                    (
                        "Optimization",
                        format!("{:.1}%", s.optimization_percent),
                        format!("{} saved", human(saved)),
                    ),
                    ("Trash", human(s.trash_bytes), "restorable".into()),
                    (
                        "Awaiting GC",
                        human(s.condemned_bytes + s.dead_bytes),
                        format!("{:.1}% of packs dead", s.fragmentation * 100.0),
                    ),
                    (
                        "Free disk",
                        s.free_disk_bytes.map(human).unwrap_or_else(|| "unknown".into()),
                        "data dir".into(),
                    ),
                ],
            );
        }
        Some(g) => cards(
            h,
            &[
                ("Files", human(g.logical_bytes), format!("{} files", g.files)),
                ("Packages", g.packages.to_string(), format!("{} versions", g.versions)),
                (
                    "After dedup",
                    human(g.unique_bytes),
                    format!("dedup ×{:.2}", g.dedup_ratio),
                ),
                (
                    "Stored",
                    human(g.physical_bytes),
                    format!("compression ×{:.2}", g.compression_ratio),
                ),
                ("Exclusive", human(g.exclusive_bytes), "freed if deleted".into()),
                ("Shared", human(g.shared_bytes), "with others".into()),
                ("Trash", human(g.trash_bytes), format!("{} files", g.trash_files)),
            ],
        ),
    }
}

/// Growth, claimed only over the days that have snapshots.
fn growth(r: &pb::CapacityReport, with_stored: bool) -> String {
    let (Some(first), Some(last)) = (r.days.first(), r.days.last()) else {
        return "No daily snapshot yet: growth is known from the second day on.".into();
    };
    if first.day == last.day {
        return format!(
            "One daily snapshot so far ({}): growth is known from the second day on.",
            date(last.day)
        );
    }
    let mut parts = Vec::new();
    let mut seen = None;
    for g in [r.growth_30d, r.growth_90d].into_iter().flatten() {
        let Some(since) = g.since_day else { continue };
        if seen == Some(since) {
            continue;
        }
        seen = Some(since);
        let days = last.day - since;
        let mut t = format!(
            "over the last {days} days (since {}{}): files {}",
            date(since),
            if days < g.days {
                format!(", the oldest snapshot within {} days", g.days)
            } else {
                String::new()
            },
            signed(g.file_bytes)
        );
        if with_stored {
            let _ = write!(t, ", stored {}", signed(g.physical_bytes));
        }
        parts.push(t);
    }
    format!("Growth {}.", parts.join("; "))
}

pub fn render(p: &Page<'_>) -> String {
    let r = p.report;
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:sans-serif;margin:24px;color:#1a202c;max-width:980px}} h1{{font-size:22px;margin-bottom:4px}} h2{{font-size:17px;margin-top:28px}} h3{{font-size:14px;margin:16px 0 6px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{padding:3px 10px;border-bottom:1px solid #e2e8f0;text-align:right}}
td:first-child,th:first-child{{text-align:left}} .cards{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #e2e8f0;border-radius:6px;padding:8px 14px;min-width:150px}} .card b{{display:block;font-size:18px}}
.meta,.note{{color:#4a5568;font-size:13px}} .empty{{color:#4a5568;font-style:italic}}
</style></head><body><h1>{title}</h1><p class="meta">{meta}</p>"#,
        title = esc(p.title),
        meta = esc(&provenance(r))
    );
    scope_cards(&mut h, p);

    let project = matches!(p.scope, Scope::Project(..));
    h.push_str("<h2>Usage over time</h2>");
    if r.days.is_empty() {
        h.push_str(r#"<p class="empty">No daily snapshot yet.</p>"#);
    } else if project {
        h.push_str(&lines(&r.days, &[("file bytes (logical)", |d| d.file_bytes)]));
        h.push_str(
            r#"<p class="note">A project's history is its packages' daily file bytes; stored bytes are kept per namespace.</p>"#,
        );
    } else {
        h.push_str(&lines(
            &r.days,
            &[
                ("file bytes (logical)", |d| d.file_bytes),
                ("stored (physical)", |d| d.physical_bytes),
            ],
        ));
    }
    let _ = write!(h, "<p>{}</p>", esc(&growth(r, !project)));

    h.push_str("<h2>Dedup and compression savings</h2>");
    let (logical, unique, physical) = match p.scoped {
        Some(g) => (g.logical_bytes, g.unique_bytes, g.physical_bytes),
        None => {
            let s = r.summary.unwrap_or_default();
            (s.artifacts_bytes, s.binaries_bytes, s.physical_bytes)
        }
    };
    h.push_str(&bars(
        &[(p.scope.name(), vec![logical, unique, physical])],
        &["files (logical)", "after dedup (unique)", "stored (compressed)"],
    ));

    let (part, parts) = p.scope.parts();
    let _ = write!(h, "<h2>By {part}: stored bytes, exclusive and shared</h2>");
    let total: u64 = p.parts.iter().map(|g| g.physical_bytes).sum();
    if !p.parts.is_empty() {
        let rows: Vec<_> = p
            .parts
            .iter()
            .map(|g| (g.key.clone(), vec![g.exclusive_bytes, g.shared_bytes]))
            .collect();
        h.push_str(&bars(&rows, &["exclusive (freed if deleted)", "shared with others"]));
    }
    let rows: Vec<Vec<String>> = p
        .parts
        .iter()
        .map(|g| {
            vec![
                g.key.clone(),
                g.packages.to_string(),
                g.files.to_string(),
                human(g.logical_bytes),
                human(g.physical_bytes),
                percent(g.physical_bytes, total),
                human(g.exclusive_bytes),
                human(g.shared_bytes),
                human(g.trash_bytes),
            ]
        })
        .collect();
    table(
        &mut h,
        &[
            part,
            "packages",
            "files",
            "logical",
            "stored",
            "% of stored",
            "exclusive",
            "shared",
            "trash",
        ],
        &rows,
        &format!("No {parts} in {} hold anything yet.", p.scope.name()),
    );
    if !p.parts.is_empty() {
        h.push_str(
            r#"<p class="note">% of stored: of the sum of the rows; a chunk two of them share counts in both.</p>"#,
        );
    }

    h.push_str("<h2>By package type</h2>");
    match p.by_type {
        None => h.push_str(
            r#"<p class="note">Package types are counted per namespace and for the whole store, not per project: the packages above are this project's breakdown.</p>"#,
        ),
        Some([]) => h.push_str(r#"<p class="empty">No package of any type yet.</p>"#),
        Some(ty) => {
            let rows: Vec<_> = ty
                .iter()
                .map(|g| (g.key.clone(), vec![g.logical_bytes, g.physical_bytes]))
                .collect();
            h.push_str(&bars(&rows, &["files (logical)", "stored (physical)"]));
        }
    }

    h.push_str("<h2>Where the stored bytes are: namespace → project → package</h2>");
    if p.packages.iter().any(|g| g.physical_bytes > 0) {
        h.push_str(&treemap(p.packages));
        let _ = write!(
            h,
            r#"<p class="note">Area: stored bytes of each package ({} largest shown); a chunk packages share counts in each.</p>"#,
            p.packages.len()
        );
    } else {
        h.push_str(r#"<p class="empty">Nothing stored yet.</p>"#);
    }

    h.push_str("<h2>Largest packages</h2>");
    let rows: Vec<Vec<String>> = p
        .packages
        .iter()
        .take(10)
        .map(|g| {
            vec![
                g.key.clone(),
                g.files.to_string(),
                human(g.logical_bytes),
                human(g.physical_bytes),
                human(g.exclusive_bytes),
                human(g.shared_bytes),
                human(g.trash_bytes),
            ]
        })
        .collect();
    table(
        &mut h,
        &["package", "files", "logical", "stored", "exclusive", "shared", "trash"],
        &rows,
        &format!("No packages in {} yet.", p.scope.name()),
    );

    h.push_str("<h2>Fastest-growing packages (30 days)</h2>");
    let rows: Vec<Vec<String>> = r
        .fastest_growing
        .iter()
        .map(|f| vec![f.package.clone(), human(f.bytes), signed(f.growth_30d)])
        .collect();
    let none = match r.growth_30d.and_then(|g| g.since_day) {
        None => "No snapshot from an earlier day yet: growth shows from the second day on.".to_string(),
        Some(d) => format!("No package grew since {}.", date(d)),
    };
    table(&mut h, &["package", "bytes", "growth"], &rows, &none);

    freeable(&mut h, r);
    if let Some(space) = r.summary.as_ref().and_then(|s| s.space.as_ref()) {
        on_disk(&mut h, space);
    }
    if let Some(o) = r.summary.as_ref().and_then(|s| s.optimize.as_ref()) {
        optimizer(&mut h, o);
    }
    status(&mut h, r);
    let _ = writeln!(
        h,
        "<p><small>Computed in {} ms.</small></p></body></html>",
        r.elapsed_ms
    );
    h
}

/// Idle packages and what each retention policy would free now.
fn freeable(h: &mut String, r: &pb::CapacityReport) {
    h.push_str("<h2>What could be freed</h2>");
    let Some(f) = &r.freeable else {
        h.push_str(r#"<p class="empty">Not computed for this report.</p>"#);
        return;
    };
    for (title, idle, never) in [
        ("Never downloaded", &f.never_downloaded, true),
        (
            &*format!("Not downloaded in {} days", f.idle_days),
            &f.not_downloaded,
            false,
        ),
    ] {
        let i = idle.clone().unwrap_or_default();
        let _ = write!(
            h,
            "<h3>{}: {} packages, {} files, {} ({} stored only by them)</h3>",
            esc(title),
            i.packages,
            i.files,
            human(i.logical_bytes),
            human(i.exclusive_bytes)
        );
        let rows: Vec<Vec<String>> = i
            .largest
            .iter()
            .map(|p| {
                vec![
                    p.package.clone(),
                    p.files.to_string(),
                    human(p.logical_bytes),
                    human(p.exclusive_bytes),
                    match p.last_download_ms {
                        0 => "never".into(),
                        ms => when(ms),
                    },
                ]
            })
            .collect();
        let empty = match never {
            true => "Every package has been downloaded at least once.".to_string(),
            false => format!("No package has gone {} days without a download.", f.idle_days),
        };
        table(
            h,
            &["package", "files", "logical", "exclusive", "last download"],
            &rows,
            &empty,
        );
    }
    h.push_str("<h3>Retention policies, if they swept now</h3>");
    let rows: Vec<Vec<String>> = f
        .policies
        .iter()
        .map(|p| {
            vec![
                p.policy.clone(),
                match p.project.as_str() {
                    "" => p.namespace.clone(),
                    pr => format!("{}/{pr}", p.namespace),
                },
                p.versions.to_string(),
                p.files.to_string(),
                human(p.logical_bytes),
                human(p.physical_bytes),
            ]
        })
        .collect();
    table(
        h,
        &["policy", "covers", "versions", "files", "logical", "stored freed"],
        &rows,
        "No retention policy covers this scope.",
    );
    if !rows.is_empty() {
        h.push_str(r#"<p class="note">Each policy planned on its own; stored bytes come back after the trash window, purge and GC.</p>"#);
    }
}

/// Every byte of the store in a named bucket: one stacked bar, and the
/// table whose sum stands beside the data dir's measured size.
/// What the package-aware optimizer stored as recipes, by format and
/// method, and what it saved.
fn optimizer(h: &mut String, o: &pb::OptimizeTotals) {
    h.push_str("<h2>Package-aware storage: what the optimizer did</h2>");
    let saved = o.released_bytes as i64 - o.added_bytes as i64;
    let _ = write!(
        h,
        "<p>{} blobs ({}) are stored as recipes of their expanded contents and {} ({}) were kept raw; \
         the switches released {} of raw chunks and added {}: {} saved.</p>",
        o.optimized_blobs,
        human(o.optimized_bytes),
        o.raw_blobs,
        human(o.raw_bytes),
        human(o.released_bytes),
        human(o.added_bytes),
        signed(saved)
    );
    let rows = super::space::optimize_rows(o);
    table(h, &["figure", "blobs or streams", "bytes"], &rows, "");
}

fn on_disk(h: &mut String, s: &pb::StoreSpace) {
    const COLOURS: [&str; 10] = [
        "#3182ce", "#ed8936", "#ecc94b", "#e53e3e", "#9b2c2c", "#718096", "#a0aec0", "#48bb78", "#4fd1c5", "#2d3748",
    ];
    h.push_str("<h2>Where every byte on disk is</h2>");
    let buckets = super::space::buckets(s);
    let total = s.total_bytes.max(1) as f64;
    let mut x = 0.0;
    let _ = write!(h, r#"<svg width="{W}" height="28" role="img">"#);
    for ((name, n), c) in buckets.iter().zip(COLOURS) {
        let bw = *n as f64 / total * W;
        if bw > 0.0 {
            let _ = write!(
                h,
                r#"<rect x="{x:.1}" y="0" width="{bw:.1}" height="24" fill="{c}"><title>{}: {}</title></rect>"#,
                esc(name),
                human(*n)
            );
        }
        x += bw;
    }
    h.push_str("</svg>");
    let mut rows: Vec<(&str, String, String, String)> = buckets
        .iter()
        .zip(COLOURS)
        .map(|((name, n), c)| (c, name.to_string(), human(*n), percent(*n, s.total_bytes)))
        .collect();
    if s.packs_elsewhere_bytes > 0 {
        let what = "packs in the pack store (not in the data dir)".to_string();
        rows.push(("", what, human(s.packs_elsewhere_bytes), "–".into()));
    }
    let total = percent(s.total_bytes, s.total_bytes);
    rows.push(("", "total of the buckets".into(), human(s.total_bytes), total));
    rows.push(("", "data dir, measured".into(), human(s.data_dir_bytes), "–".into()));
    h.push_str("<table><tr><th>bucket</th><th>bytes</th><th>share</th></tr>");
    for (colour, name, bytes, share) in rows {
        let square = match colour {
            "" => String::new(),
            c => format!(r#"<span style="color:{c}">■</span> "#),
        };
        let _ = write!(
            h,
            "<tr><td>{square}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&name),
            esc(&bytes),
            esc(&share)
        );
    }
    h.push_str("</table>");
}

/// Garbage collection and retention sweeps: last and next runs.
fn status(h: &mut String, r: &pb::CapacityReport) {
    h.push_str("<h2>Garbage collection and retention sweeps</h2>");
    let rows: Vec<Vec<String>> = [("garbage collection", &r.gc), ("retention sweep", &r.sweep)]
        .into_iter()
        .map(|(name, run)| {
            let b = run.unwrap_or_default();
            vec![
                name.to_string(),
                match b.interval_ms {
                    0 => "not scheduled".into(),
                    ms => format!("every {}", span(ms)),
                },
                b.runs.to_string(),
                match b.last_run_ms {
                    Some(ms) => format!("{} (took {} ms)", when(ms), b.last_elapsed_ms),
                    None => "no run yet".into(),
                },
                match (b.running, b.next_run_ms) {
                    (true, _) => "running now".into(),
                    (false, Some(ms)) => when(ms),
                    (false, None) => "–".into(),
                },
            ]
        })
        .collect();
    table(
        h,
        &["job", "schedule", "runs since start", "last run", "next run"],
        &rows,
        "",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squarify_fills_the_area_in_proportion() {
        let area = Rect {
            x: 0.0,
            y: 0.0,
            w: 600.0,
            h: 400.0,
        };
        let ws = [6.0, 6.0, 4.0, 3.0, 2.0, 2.0, 1.0];
        let rs = squarify(&ws, area);
        assert_eq!(rs.len(), ws.len());
        let total: f64 = ws.iter().sum();
        for (w, r) in ws.iter().zip(&rs) {
            assert!((r.w * r.h - w / total * 240_000.0).abs() < 1e-6, "{r:?} for {w}");
            assert!(r.x >= -1e-9 && r.y >= -1e-9 && r.x + r.w <= 600.0 + 1e-6 && r.y + r.h <= 400.0 + 1e-6);
            // Squarified: no sliver.
            assert!(r.w.max(r.h) / r.w.min(r.h) < 4.0, "{r:?}");
        }
        // No two overlap.
        for (i, a) in rs.iter().enumerate() {
            for b in &rs[i + 1..] {
                let ox = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
                let oy = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
                assert!(ox <= 1e-6 || oy <= 1e-6, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn dates_and_growth_claim_only_the_days_with_data() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_424), "2025-12-02");
        assert_eq!(when(86_400_000 + 3_723_000), "1970-01-02 01:02 UTC");
        let day = |d| pb::DayUsage {
            day: d,
            ..Default::default()
        };
        let mut r = pb::CapacityReport {
            days: vec![day(100)],
            ..Default::default()
        };
        assert!(growth(&r, true).starts_with("One daily snapshot so far"));
        r.days.push(day(110));
        let g = pb::Growth {
            days: 30,
            since_day: Some(100),
            file_bytes: 2048,
            physical_bytes: 1024,
        };
        (r.growth_30d, r.growth_90d) = (Some(g), Some(pb::Growth { days: 90, ..g }));
        let text = growth(&r, true);
        assert!(text.contains("over the last 10 days (since 1970-04-11"), "{text}");
        assert!(!text.contains("30 days:") && !text.contains("90 days"), "{text}");
    }
}
