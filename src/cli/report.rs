//! `stowage report`: capacity per namespace, project, package or type.

use clap::{Args, ValueEnum};
use serde_json::json;

use super::Conn;
use super::catalog::{connect, emit, fail};
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
    /// Group by namespace, project, package or type.
    #[arg(long, default_value = "namespace")]
    pub by: String,
    /// Only the N largest groups (by physical bytes).
    #[arg(long)]
    pub top: Option<u32>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// html: write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
}

const COLUMNS: [&str; 14] = [
    "key",
    "packages",
    "versions",
    "files",
    "logical_bytes",
    "unique_bytes",
    "physical_bytes",
    "exclusive_bytes",
    "shared_bytes",
    "trash_files",
    "trash_bytes",
    "dedup_ratio",
    "compression_ratio",
    "share_of_physical",
];

fn row(g: &pb::CapacityGroup, total_physical: u64) -> Vec<String> {
    let share = if total_physical == 0 {
        0.0
    } else {
        g.physical_bytes as f64 / total_physical as f64
    };
    vec![
        g.key.clone(),
        g.packages.to_string(),
        g.versions.to_string(),
        g.files.to_string(),
        g.logical_bytes.to_string(),
        g.unique_bytes.to_string(),
        g.physical_bytes.to_string(),
        g.exclusive_bytes.to_string(),
        g.shared_bytes.to_string(),
        g.trash_files.to_string(),
        g.trash_bytes.to_string(),
        format!("{:.2}", g.dedup_ratio),
        format!("{:.2}", g.compression_ratio),
        format!("{:.4}", share),
    ]
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn human(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

pub async fn run(a: ReportArgs) -> anyhow::Result<()> {
    let client = connect(&a.conn).await?;
    let ask = |by: &str, top: u32| {
        let req = pb::CapacityRequest {
            namespace: a.namespace.clone().unwrap_or_default(),
            project: a.project.clone().unwrap_or_default(),
            by: by.into(),
            top,
        };
        let mut c = client.report.clone();
        async move { Ok::<_, anyhow::Error>(c.capacity(req).await.map_err(fail)?.into_inner()) }
    };
    let r = ask(&a.by, a.top.unwrap_or(0)).await?;
    let s = r.summary.unwrap_or_default();
    match a.format {
        Format::Json => {
            let groups: Vec<serde_json::Value> = r
                .groups
                .iter()
                .map(|g| {
                    let cells = row(g, s.physical_bytes);
                    let mut o = serde_json::Map::new();
                    o.insert("key".into(), json!(g.key));
                    for (c, v) in COLUMNS.iter().zip(cells).skip(1) {
                        let n: serde_json::Value = v
                            .parse::<u64>()
                            .map(|n| json!(n))
                            .unwrap_or_else(|_| v.parse::<f64>().map(|f| json!(f)).unwrap_or(json!(v)));
                        o.insert((*c).into(), n);
                    }
                    serde_json::Value::Object(o)
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
                },
                "groups": groups,
                "elapsed_ms": r.elapsed_ms,
            });
            emit(|w| writeln!(w, "{v}"))
        }
        Format::Html => {
            let (ns, ty, pkgs) = (
                ask("namespace", 0).await?,
                ask("type", 0).await?,
                ask("package", 10).await?,
            );
            let scope = match (&a.namespace, &a.project) {
                (Some(n), Some(p)) => format!(" of {n}/{p}"),
                (Some(n), None) => format!(" of {n}"),
                _ => String::new(),
            };
            let page = super::html::render(&super::html::Page {
                title: &format!("Stowage capacity report{scope}"),
                report: &r,
                by_namespace: &ns.groups,
                by_type: &ty.groups,
                largest: &pkgs.groups,
            });
            match &a.output {
                Some(path) => Ok(std::fs::write(path, page)?),
                None => emit(|w| w.write_all(page.as_bytes())),
            }
        }
        Format::Csv => emit(|w| {
            writeln!(w, "{}", COLUMNS.join(","))?;
            for g in &r.groups {
                let cells: Vec<String> = row(g, s.physical_bytes).iter().map(|c| csv_cell(c)).collect();
                writeln!(w, "{}", cells.join(","))?;
            }
            Ok(())
        }),
        Format::Table => emit(|w| {
            writeln!(
                w,
                "binaries: {} ({}); artifacts: {} ({}); optimization {:.1}%; physical {}; packs {} ({}), \
                 fragmentation {:.1}%; trash {}; condemned {}; dead {}{}",
                s.binaries_count,
                human(s.binaries_bytes),
                s.artifacts_count,
                human(s.artifacts_bytes),
                s.optimization_percent,
                human(s.physical_bytes),
                s.packs,
                human(s.pack_bytes),
                s.fragmentation * 100.0,
                human(s.trash_bytes),
                human(s.condemned_bytes),
                human(s.dead_bytes),
                s.free_disk_bytes
                    .map(|f| format!("; free disk {}", human(f)))
                    .unwrap_or_default()
            )?;
            writeln!(
                w,
                "{:<40} {:>8} {:>8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10} {:>6}",
                r.by.to_uppercase(),
                "PKGS",
                "FILES",
                "LOGICAL",
                "UNIQUE",
                "PHYSICAL",
                "EXCLUSIVE",
                "SHARED",
                "TRASH",
                "DEDUP"
            )?;
            for g in &r.groups {
                writeln!(
                    w,
                    "{:<40} {:>8} {:>8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10} {:>6.2}",
                    g.key,
                    g.packages,
                    g.files,
                    human(g.logical_bytes),
                    human(g.unique_bytes),
                    human(g.physical_bytes),
                    human(g.exclusive_bytes),
                    human(g.shared_bytes),
                    human(g.trash_bytes),
                    g.dedup_ratio
                )?;
            }
            Ok(())
        }),
    }
}
