//! `stowage namespaces list`, and how a listing says that its namespace
//! holds nothing rather than printing a lone header.

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{Render, print_or, size};
use super::{Conn, connect, fail};
use crate::api::client::{Client, Code};
use crate::api::pb;

#[derive(Subcommand)]
pub enum NamespacesCmd {
    /// Namespaces that hold packages (or trash), with their sizes. Needs a
    /// token with a grant over every namespace.
    List {
        #[command(flatten)]
        conn: Conn,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A namespace's row: the report's namespace group.
struct Namespace(pb::CapacityGroup);

impl Render for Namespace {
    const HEADER: &'static [&'static str] = &["NAMESPACE", "PACKAGES", "VERSIONS", "FILES", "SIZE", "STORED", "TRASH"];

    fn json(&self) -> Value {
        let g = &self.0;
        json!({
            "namespace": g.key,
            "packages": g.packages,
            "versions": g.versions,
            "files": g.files,
            "logical_bytes": g.logical_bytes,
            "physical_bytes": g.physical_bytes,
            "trash_files": g.trash_files,
            "trash_bytes": g.trash_bytes,
        })
    }

    fn row(&self) -> Vec<String> {
        let g = &self.0;
        vec![
            g.key.clone(),
            g.packages.to_string(),
            g.versions.to_string(),
            g.files.to_string(),
            size(g.logical_bytes),
            size(g.physical_bytes),
            size(g.trash_bytes),
        ]
    }
}

fn holds_something(g: &pb::CapacityGroup) -> bool {
    g.packages > 0 || g.files > 0 || g.trash_files > 0
}

pub async fn run(cmd: NamespacesCmd) -> anyhow::Result<()> {
    let NamespacesCmd::List { conn, json } = cmd;
    let req = pb::CapacityRequest {
        by: "namespace".into(),
        ..Default::default()
    };
    let r = connect(&conn)
        .await?
        .report
        .capacity(req)
        .await
        .map_err(fail)?
        .into_inner();
    let mut items: Vec<Namespace> = r.groups.into_iter().filter(holds_something).map(Namespace).collect();
    items.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    print_or(&items, json, "the store holds no namespaces")
}

/// Whether `namespace` holds any package, active or in the trash. A
/// namespace the caller may not read counts as holding something: the
/// listing's own answer stands.
pub(super) async fn holds_anything(client: &Client, namespace: &str) -> bool {
    let req = pb::CapacityRequest {
        namespace: namespace.into(),
        by: "namespace".into(),
        ..Default::default()
    };
    match client.report.clone().capacity(req).await {
        Ok(r) => r.into_inner().groups.iter().any(holds_something),
        Err(s) => s.code() != Code::NotFound,
    }
}

/// What an empty package listing of `namespace` says.
pub(super) async fn empty_listing(client: &Client, namespace: &str, filtered: bool) -> String {
    match holds_anything(client, namespace).await {
        false => format!("namespace {namespace:?} holds nothing (`stowage namespaces list` shows those that do)"),
        true if filtered => format!("no packages of namespace {namespace:?} match"),
        true => format!("namespace {namespace:?} has no active packages (see --state deleted)"),
    }
}
