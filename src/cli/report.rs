//! `stowage report`: capacity per namespace, project, package or type.

use clap::{Args, ValueEnum};
use serde_json::json;

use super::output::{csv_cell, emit, size, table};
use super::{Conn, connect, fail};
use crate::api::pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// One self-contained HTML page with SVG charts.
    Html,
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[arg(long, short)]
    pub namespace: Option<String>,
    #[arg(long, short)]
    pub project: Option<String>,
    /// Group by namespace, project, package or type [default: namespace;
    /// package in a project's report].
    #[arg(long)]
    pub by: Option<String>,
    /// Only the N largest groups (by physical bytes).
    #[arg(long)]
    pub top: Option<u32>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write to this file instead of stdout (any format).
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    /// Recompute every figure from the catalog (slow: reads every file
    /// record) and report where the counters kept at write time differ;
    /// exits non-zero if any does.
    #[arg(long)]
    pub recompute: bool,
}

/// One group's figures, in column order: the JSON object and the CSV row.
fn fields(g: &pb::CapacityGroup, total_physical: u64) -> [(&'static str, serde_json::Value); 14] {
    let share = match total_physical {
        0 => 0.0,
        t => g.physical_bytes as f64 / t as f64,
    };
    [
        ("key", json!(g.key)),
        ("packages", json!(g.packages)),
        ("versions", json!(g.versions)),
        ("files", json!(g.files)),
        ("logical_bytes", json!(g.logical_bytes)),
        ("unique_bytes", json!(g.unique_bytes)),
        ("physical_bytes", json!(g.physical_bytes)),
        ("exclusive_bytes", json!(g.exclusive_bytes)),
        ("shared_bytes", json!(g.shared_bytes)),
        ("trash_files", json!(g.trash_files)),
        ("trash_bytes", json!(g.trash_bytes)),
        ("dedup_ratio", json!(g.dedup_ratio)),
        ("compression_ratio", json!(g.compression_ratio)),
        ("share_of_physical", json!(share)),
    ]
}

pub async fn run(a: ReportArgs) -> anyhow::Result<()> {
    let client = connect(&a.conn).await?;
    let ask = |by: &str, top: u32, recompute: bool, freeable: bool| {
        let req = pb::CapacityRequest {
            namespace: a.namespace.clone().unwrap_or_default(),
            project: a.project.clone().unwrap_or_default(),
            by: by.into(),
            top,
            recompute,
            freeable,
        };
        let mut c = client.report.clone();
        async move { Ok::<_, anyhow::Error>(c.capacity(req).await.map_err(fail)?.into_inner()) }
    };
    let by = a.by.as_deref().unwrap_or(match a.project {
        Some(_) => "package",
        None => "namespace",
    });
    let freeable = matches!(a.format, Format::Json | Format::Html);
    let r = ask(by, a.top.unwrap_or(0), a.recompute, freeable).await?;
    let s = r.summary.unwrap_or_default();
    print(&a, &r, &s, |by, top, recompute| ask(by, top, recompute, false)).await?;
    if r.recomputed {
        for d in &r.drift {
            eprintln!(
                "drift: {} {}: counter {}, recomputed {}",
                d.record, d.field, d.stored, d.recomputed
            );
        }
        if !r.drift.is_empty() {
            anyhow::bail!(
                "{} counters differ from the catalog (`stowage rebuild-index` rewrites them)",
                r.drift.len()
            );
        }
        eprintln!("recomputed from the catalog in {} ms: the counters agree", r.elapsed_ms);
    }
    Ok(())
}

async fn print<F, Fut>(a: &ReportArgs, r: &pb::CapacityReport, s: &pb::CapacitySummary, ask: F) -> anyhow::Result<()>
where
    F: Fn(&str, u32, bool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<pb::CapacityReport>>,
{
    match a.format {
        Format::Json => {
            let groups: Vec<serde_json::Value> = r
                .groups
                .iter()
                .map(|g| {
                    serde_json::Value::Object(
                        fields(g, s.physical_bytes)
                            .into_iter()
                            .map(|(k, v)| (k.into(), v))
                            .collect(),
                    )
                })
                .collect();
            let v = json!({
                "by": r.by,
                "summary": {
                    "binaries_count": s.binaries_count,
                    "binaries_bytes": s.binaries_bytes,
                    "artifacts_count": s.artifacts_count,
                    "artifacts_bytes": s.artifacts_bytes,
                    "optimization_percent": s.optimization_percent,
                    "logical_bytes": s.logical_bytes,
                    "physical_bytes": s.physical_bytes,
                    "trash_bytes": s.trash_bytes,
                    "condemned_bytes": s.condemned_bytes,
                    "dead_bytes": s.dead_bytes,
                    "packs": s.packs,
                    "pack_bytes": s.pack_bytes,
                    "fragmentation": s.fragmentation,
                    "free_disk_bytes": s.free_disk_bytes,
                    "unique_bytes": s.unique_bytes,
                    "dedup_ratio": s.dedup_ratio,
                    "compression_ratio": s.compression_ratio,
                    "space": s.space.as_ref().map(super::space::space_json),
                    "optimize": s.optimize.as_ref().map(super::space::optimize_json),
                },
                "groups": groups,
                "elapsed_ms": r.elapsed_ms,
                "recomputed": r.recomputed,
                "drift": r.drift.iter().map(|d| json!({
                    "record": d.record,
                    "field": d.field,
                    "stored": d.stored,
                    "recomputed": d.recomputed,
                })).collect::<Vec<_>>(),
            });
            let mut v = v;
            if let serde_json::Value::Object(m) = &mut v {
                m.extend(super::report_json::extras(r));
            }
            write_out(a, |w| writeln!(w, "{v}"))
        }
        Format::Html => {
            use super::html::Scope;
            let scope = match (&a.namespace, &a.project) {
                (Some(n), Some(p)) => Scope::Project(n, p),
                (Some(n), None) => Scope::Namespace(n),
                _ => Scope::Store,
            };
            // The scope's own figures, the groups it is made of, its types
            // (not counted per project) and its largest packages.
            let (own, parts) = match scope {
                Scope::Store => (None, ask("namespace", 0, false).await?),
                Scope::Namespace(_) => (Some(ask("namespace", 0, false).await?), ask("project", 0, false).await?),
                Scope::Project(..) => (Some(ask("project", 0, false).await?), ask("package", 0, false).await?),
            };
            let ty = match scope {
                Scope::Project(..) => None,
                _ => Some(ask("type", 0, false).await?),
            };
            let pkgs = ask("package", TREEMAP_PACKAGES, false).await?;
            let title = match scope {
                Scope::Project(n, p) => format!("Stowage capacity report of {n}/{p}"),
                Scope::Namespace(n) => format!("Stowage capacity report of {n}"),
                Scope::Store => "Stowage capacity report".into(),
            };
            let empty = pb::CapacityGroup::default();
            let page = super::html::render(&super::html::Page {
                title: &title,
                scope,
                report: r,
                scoped: own.as_ref().map(|o| o.groups.first().unwrap_or(&empty)),
                parts: &parts.groups,
                by_type: ty.as_ref().map(|t| &t.groups[..]),
                packages: &pkgs.groups,
            });
            write_out(a, |w| w.write_all(page.as_bytes()))
        }
        Format::Csv => write_out(a, |w| {
            let header: Vec<&str> = fields(&Default::default(), 0).iter().map(|f| f.0).collect();
            writeln!(w, "{}", header.join(","))?;
            for g in &r.groups {
                let cells: Vec<String> = fields(g, s.physical_bytes)
                    .iter()
                    .map(|(_, v)| match v {
                        serde_json::Value::String(t) => csv_cell(t),
                        v => v.to_string(),
                    })
                    .collect();
                writeln!(w, "{}", cells.join(","))?;
            }
            Ok(())
        }),
        Format::Table => write_out(a, |w| {
            writeln!(
                w,
                "binaries: {} ({}); artifacts: {} ({}); logical {}, unique {}, physical {}: dedup {:.2}, \
                 compression {:.2}, optimization {:.1}%; packs {} ({}), \
                 fragmentation {:.1}%; trash {}; condemned {}; dead {}{}",
                s.binaries_count,
                size(s.binaries_bytes),
                s.artifacts_count,
                size(s.artifacts_bytes),
                size(s.logical_bytes),
                size(s.unique_bytes),
                size(s.physical_bytes),
                s.dedup_ratio,
                s.compression_ratio,
                s.optimization_percent,
                s.packs,
                size(s.pack_bytes),
                s.fragmentation * 100.0,
                size(s.trash_bytes),
                size(s.condemned_bytes),
                size(s.dead_bytes),
                s.free_disk_bytes
                    .map(|f| format!("; free disk {}", size(f)))
                    .unwrap_or_default()
            )?;
            let by = r.by.to_uppercase();
            let header = [
                by.as_str(),
                "PACKAGES",
                "FILES",
                "LOGICAL",
                "UNIQUE",
                "PHYSICAL",
                "EXCLUSIVE",
                "SHARED",
                "TRASH",
                "DEDUP",
            ];
            let rows = r.groups.iter().map(|g| {
                let mut row = vec![g.key.clone(), g.packages.to_string(), g.files.to_string()];
                row.extend(
                    [
                        g.logical_bytes,
                        g.unique_bytes,
                        g.physical_bytes,
                        g.exclusive_bytes,
                        g.shared_bytes,
                        g.trash_bytes,
                    ]
                    .map(size),
                );
                row.push(format!("{:.2}", g.dedup_ratio));
                row
            });
            if r.groups.is_empty() {
                // No lone header: say what holds nothing.
                match (&a.namespace, &a.project) {
                    (Some(ns), Some(p)) => writeln!(w, "project {ns}/{p} holds no files")?,
                    (Some(ns), None) => writeln!(w, "namespace {ns:?} holds no files")?,
                    _ => writeln!(w, "the store holds no files")?,
                }
            } else {
                table(w, &header, rows)?;
            }
            if let Some(space) = &s.space {
                writeln!(w)?;
                super::space::space_table(w, space)?;
            }
            if let Some(o) = &s.optimize {
                writeln!(w)?;
                super::space::optimize_table(w, o)?;
            }
            Ok(())
        }),
    }
}

/// Packages the HTML report's treemap shows at most (the largest).
const TREEMAP_PACKAGES: u32 = 300;

/// Writes the report to `--output` if given (created or replaced), else to stdout.
fn write_out(a: &ReportArgs, f: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let Some(path) = &a.output else { return emit(f) };
    let file = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    f(&mut w)
        .and_then(|()| std::io::Write::flush(&mut w))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
