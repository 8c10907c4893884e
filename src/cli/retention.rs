//! `stowage retention …` and `stowage gc`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::json;

use super::output::{csv_cell, emit};
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
                writeln!(w, "{:<24} {:<24} {:<16} RULES", "NAME", "NAMESPACE", "PROJECT")?;
                for p in &ps {
                    let rules = serde_json::to_string(&json!({
                        "versions": p.versions,
                        "prereleases": p.prereleases,
                        "keep_n_duplicated_package_files": p.keep_n_duplicated_package_files,
                    }))
                    .unwrap_or_default();
                    let project = p.project.as_deref().unwrap_or("*");
                    writeln!(w, "{:<24} {:<24} {:<16} {rules}", p.name, p.namespace, project)?;
                }
                Ok(())
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
    } else if !json {
        emit(|w| {
            writeln!(
                w,
                "{:<14} {:<32} {:<20} {:>8} {:>14}  REASON",
                "ACTION", "PACKAGE", "VERSION", "FILES", "BYTES"
            )
        })?;
    }
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
                    let what = match it.file_id {
                        0 => it.version.clone(),
                        id => format!("{} #{id} {}", it.version, it.file_name),
                    };
                    let pkg = format!("{}/{} ({})", it.namespace, it.package, it.package_type);
                    writeln!(
                        w,
                        "{:<14} {:<32} {:<20} {:>8} {:>14}  {}",
                        it.action, pkg, what, it.files, it.logical_bytes, it.reason
                    )?;
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
                    writeln!(
                        w,
                        "\n{} versions and {} files ({} bytes); frees {} blobs ({} bytes) and {} bytes stored \
                         ({} chunks no surviving file uses); {} packages scanned in {} ms",
                        s.versions,
                        s.files,
                        s.logical_bytes,
                        s.blobs_freed,
                        s.unique_bytes,
                        s.physical_bytes,
                        s.chunks_freed,
                        s.packages_scanned,
                        s.elapsed_ms
                    )
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
        emit(|w| writeln!(w, "{}", progress_json(&p)))?;
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
