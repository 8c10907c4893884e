//! `stowage retention …` and `stowage gc`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::json;

use super::output::{count_size, csv_cell, emit, fields, size, table};
use super::{Conn, connect, fail};
use crate::api::pb;
use crate::api::retention::{policy_from, policy_to};
use crate::retention::Policy;

#[derive(Subcommand)]
pub enum RetentionCmd {
    /// Create or replace a policy from a TOML or JSON file (see README, "Retention").
    Set {
        #[command(flatten)]
        conn: Conn,
        /// The policy file ("-" reads stdin).
        file: PathBuf,
    },
    /// One policy (as TOML, ready for `set`), or every policy as a table.
    Show {
        #[command(flatten)]
        conn: Conn,
        name: Option<String>,
        #[arg(long, short)]
        namespace: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a policy.
    Delete {
        #[command(flatten)]
        conn: Conn,
        name: String,
        /// The policy's namespace (needed when the token sees several with the name).
        #[arg(long, short)]
        namespace: Option<String>,
    },
    /// Dry run: what the policies would remove and the bytes it would free.
    Plan {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        which: Which,
        /// One JSON object per item, then the summary.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV: a header and one row per item (the summary goes to stderr).
        #[arg(long)]
        csv: bool,
    },
    /// Carry out the plan: soft-delete into the trash, with a progress bar.
    Sweep {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        which: Which,
        /// Progress as JSON lines instead of a bar.
        #[arg(long)]
        json: bool,
    },
}

/// One policy by name, or all (of a namespace).
#[derive(Args)]
pub struct Which {
    /// The policy (default: every policy).
    #[arg(long)]
    pub policy: Option<String>,
    #[arg(long, short)]
    pub namespace: Option<String>,
}

impl Which {
    fn request(&self) -> pb::PlanRequest {
        pb::PlanRequest {
            policy: self.policy.clone().unwrap_or_default(),
            namespace: self.namespace.clone().unwrap_or_default(),
        }
    }
}

pub async fn run(cmd: RetentionCmd) -> anyhow::Result<()> {
    match cmd {
        RetentionCmd::Set { conn, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            let p = Policy::parse(&text).with_context(|| format!("policy {}", file.display()))?;
            let r = connect(&conn)
                .await?
                .retention
                .set_policy(policy_to(&p))
                .await
                .map_err(fail)?;
            let p = policy_from(r.into_inner()).map_err(fail)?;
            emit(|w| writeln!(w, "{}", serde_json::to_string(&p).unwrap_or_default()))
        }
        RetentionCmd::Show {
            conn,
            name: Some(name),
            namespace,
            json,
        } => {
            let r = connect(&conn)
                .await?
                .retention
                .get_policy(pb::GetPolicyRequest {
                    name,
                    namespace: namespace.unwrap_or_default(),
                })
                .await
                .map_err(fail)?;
            let p = policy_from(r.into_inner()).map_err(fail)?;
            let text = match json {
                true => serde_json::to_string_pretty(&p)?,
                false => toml::to_string(&p)?,
            };
            emit(|w| writeln!(w, "{}", text.trim_end()))
        }
        RetentionCmd::Show {
            conn, namespace, json, ..
        } => {
            let req = pb::ListPoliciesRequest {
                namespace: namespace.unwrap_or_default(),
            };
            let r = connect(&conn).await?.retention.list_policies(req).await.map_err(fail)?;
            let ps = r
                .into_inner()
                .policies
                .into_iter()
                .map(|p| policy_from(p).map_err(fail))
                .collect::<anyhow::Result<Vec<_>>>()?;
            emit(|w| {
                if json {
                    for p in &ps {
                        writeln!(w, "{}", serde_json::to_string(p).unwrap_or_default())?;
                    }
                    return Ok(());
                }
                if ps.is_empty() {
                    return writeln!(w, "no retention policies");
                }
                let rows = ps.iter().map(|p| {
                    vec![
                        p.name.clone(),
                        p.namespace.clone(),
                        p.project.clone().unwrap_or_else(|| "*".into()),
                        rules_text(p),
                    ]
                });
                table(w, &["NAME", "NAMESPACE", "PROJECT", "RULES"], rows)
            })
        }
        RetentionCmd::Delete { conn, name, namespace } => {
            let req = pb::GetPolicyRequest {
                name: name.clone(),
                namespace: namespace.unwrap_or_default(),
            };
            connect(&conn).await?.retention.delete_policy(req).await.map_err(fail)?;
            emit(|w| writeln!(w, "{}", json!({ "deleted": name })))
        }
        RetentionCmd::Plan { conn, which, json, csv } => plan(&conn, &which, json, csv).await,
        RetentionCmd::Sweep { conn, which, json } => sweep(&conn, &which, json).await,
    }
}

/// A policy's rules in words: `keep latest 3, older than 30 days;
/// prereleases: keep latest 1`.
fn rules_text(p: &Policy) -> String {
    fn rules(r: &crate::retention::Rules) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = r.keep_latest {
            out.push(format!("keep latest {n}"));
        }
        if let Some(d) = r.older_than_days {
            out.push(format!("older than {d} days"));
        }
        if let Some(d) = r.not_downloaded_days {
            out.push(format!("not downloaded in {d} days"));
        }
        out
    }
    let versions = rules(&p.versions);
    let mut parts = vec![match versions.is_empty() {
        true => "versions: no rule".to_string(),
        false => versions.join(", "),
    }];
    if let Some(pre) = &p.prereleases {
        parts.push(format!("prereleases: {}", rules(pre).join(", ")));
    }
    match &p.keep_n_duplicated_package_files {
        Some(crate::retention::policy::KeepFiles::Count(n)) => parts.push(format!("keep {n} files of a name")),
        Some(crate::retention::policy::KeepFiles::Word(w)) => parts.push(format!("keep {w} files of a name")),
        None => {}
    }
    if !p.package_types.is_empty() {
        parts.push(format!("types {}", p.package_types.join(",")));
    }
    if !p.protected.is_empty() {
        parts.push(format!("{} protected", p.protected.len()));
    }
    parts.join("; ")
}

/// The package a plan item is about: `namespace/project/type:name`.
fn package_of(it: &pb::PlanItem) -> String {
    format!("{}/{}/{}:{}", it.namespace, it.project, it.package_type, it.package)
}

const PLAN_HEADER: &[&str] = &[
    "POLICY", "ACTION", "PACKAGE", "VERSION", "FILE", "FILES", "SIZE", "REASON",
];

fn plan_row(it: &pb::PlanItem) -> Vec<String> {
    let file = match it.file_id {
        0 => "-".to_string(),
        id => format!("#{id} {}", it.file_name),
    };
    vec![
        it.policy.clone(),
        it.action.clone(),
        package_of(it),
        it.version.clone(),
        file,
        it.files.to_string(),
        size(it.logical_bytes),
        it.reason.clone(),
    ]
}

fn plan_summary(w: &mut dyn std::io::Write, s: &pb::PlanSummary) -> std::io::Result<()> {
    fields(
        w,
        &[
            ("versions to delete", s.versions.to_string()),
            ("files to delete", count_size(s.files, s.logical_bytes)),
            ("blobs freed", count_size(s.blobs_freed, s.unique_bytes)),
            (
                "stored bytes freed",
                format!(
                    "{} ({} chunks no surviving file uses)",
                    size(s.physical_bytes),
                    s.chunks_freed
                ),
            ),
            (
                "scanned",
                format!(
                    "{} policies, {} packages, {} versions, {} files in {} ms",
                    s.policies, s.packages_scanned, s.versions_scanned, s.files_scanned, s.elapsed_ms
                ),
            ),
        ],
    )
}

async fn plan(conn: &Conn, which: &Which, json: bool, csv: bool) -> anyhow::Result<()> {
    let mut stream = connect(conn)
        .await?
        .retention
        .plan(which.request())
        .await
        .map_err(fail)?
        .into_inner();
    if csv {
        emit(|w| writeln!(w, "{CSV_HEADER}"))?;
    }
    // For people, one table: its columns fit the widest item.
    let mut rows = Vec::new();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(fail)?;
        emit(|w| {
            for it in &msg.items {
                let item = item_from(it);
                if csv {
                    writeln!(w, "{}", csv_row(&item))?;
                } else if json {
                    writeln!(w, "{}", serde_json::to_string(&item).unwrap_or_default())?;
                } else {
                    rows.push(plan_row(it));
                }
            }
            Ok(())
        })?;
        if let Some(s) = msg.summary {
            let v = json!({
                "summary": {
                    "policies": s.policies,
                    "packages_scanned": s.packages_scanned,
                    "versions_scanned": s.versions_scanned,
                    "files_scanned": s.files_scanned,
                    "versions": s.versions,
                    "files": s.files,
                    "logical_bytes": s.logical_bytes,
                    "blobs_freed": s.blobs_freed,
                    "unique_bytes": s.unique_bytes,
                    "chunks_freed": s.chunks_freed,
                    "physical_bytes": s.physical_bytes,
                    "elapsed_ms": s.elapsed_ms,
                }
            });
            match (json, csv) {
                (true, _) => emit(|w| writeln!(w, "{v}"))?,
                (_, true) => eprintln!("{v}"),
                _ => emit(|w| {
                    if rows.is_empty() {
                        writeln!(w, "nothing to remove")?;
                    } else {
                        table(w, PLAN_HEADER, std::mem::take(&mut rows))?;
                    }
                    writeln!(w)?;
                    plan_summary(w, &s)
                })?,
            }
        }
    }
    Ok(())
}

const CSV_HEADER: &str =
    "policy,action,namespace,project,package_type,package,version,file_id,file_name,files,logical_bytes,reason";

fn csv_row(i: &crate::retention::PlanItem) -> String {
    let f = |s: &str| csv_cell(s);
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}",
        f(&i.policy),
        i.action,
        f(&i.namespace),
        f(&i.project),
        i.package_type,
        f(&i.package),
        f(&i.version),
        i.file_id,
        f(&i.file_name),
        i.files,
        i.logical_bytes,
        f(&i.reason)
    )
}

fn item_from(it: &pb::PlanItem) -> crate::retention::PlanItem {
    crate::retention::PlanItem {
        policy: it.policy.clone(),
        action: if it.action == "delete-version" {
            "delete-version"
        } else {
            "delete-file"
        },
        namespace: it.namespace.clone(),
        project: it.project.clone(),
        package_type: it.package_type.clone(),
        package: it.package.clone(),
        version: it.version.clone(),
        file_id: it.file_id,
        file_name: it.file_name.clone(),
        files: it.files,
        logical_bytes: it.logical_bytes,
        reason: it.reason.clone(),
    }
}

async fn sweep(conn: &Conn, which: &Which, json: bool) -> anyhow::Result<()> {
    let mut stream = connect(conn)
        .await?
        .retention
        .sweep(which.request())
        .await
        .map_err(fail)?
        .into_inner();
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} removals  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last = None;
    while let Some(p) = stream.next().await {
        let p = p.map_err(fail)?;
        match &bar {
            Some(b) => {
                b.set_length(p.total);
                b.set_position(p.done);
                b.set_message(format!(
                    "{} versions, {} files deleted",
                    p.versions_deleted, p.files_deleted
                ));
            }
            None if json => emit(|w| writeln!(w, "{}", progress_json(&p)))?,
            None => {}
        }
        last = Some(p);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let p = last.context("the sweep ended without a report")?;
    if !json {
        emit(|w| {
            let state = match p.finished {
                true => "finished",
                false => "stopped before the end",
            };
            fields(
                w,
                &[
                    ("sweep", format!("{state}: {} of {} removals", p.done, p.total)),
                    ("versions deleted", p.versions_deleted.to_string()),
                    ("files deleted", p.files_deleted.to_string()),
                    ("skipped", p.skipped.to_string()),
                    ("moved to the trash", size(p.logical_bytes)),
                ],
            )
        })?;
    }
    Ok(())
}

fn progress_json(p: &pb::SweepProgress) -> serde_json::Value {
    json!({
        "total": p.total,
        "done": p.done,
        "versions_deleted": p.versions_deleted,
        "files_deleted": p.files_deleted,
        "skipped": p.skipped,
        "logical_bytes": p.logical_bytes,
        "finished": p.finished,
    })
}
