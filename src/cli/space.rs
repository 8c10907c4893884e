//! The operator's view of space: `admin stats`, `admin purge` and `gc`,
//! as tables with readable sizes by default and one JSON object with
//! `--json`. The figures are those of `crate::figures`; the buckets those
//! of `crate::space`.

use std::io::Write;

use serde_json::{Value, json};

use super::output::{emit, size, table, time};
use super::{Conn, connect, fail};
use crate::api::pb;
use crate::catalog::PackageType;

/// What `admin purge` empties (`--now` and its scope).
#[derive(clap::Args, Clone, Default)]
pub struct PurgeArgs {
    /// Empty the trash now, ignoring `trash_window` (audited: one purge
    /// event per item, naming the caller).
    #[arg(long)]
    pub now: bool,
    /// With --now: only this namespace's trash.
    #[arg(long, short, requires = "now")]
    pub namespace: Option<String>,
    /// With --now: only this project's trash (needs --namespace).
    #[arg(long, short, requires = "namespace")]
    pub project: Option<String>,
    /// With --now: only this package's trash, as TYPE:NAME (`pypi:botocore`;
    /// needs --project).
    #[arg(long, requires = "project", value_name = "TYPE:NAME")]
    pub package: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn held(h: &Option<pb::HeldBlobs>) -> (u64, u64) {
    h.as_ref().map_or((0, 0), |h| (h.blobs, h.bytes))
}

pub async fn purge(conn: &Conn, a: PurgeArgs) -> anyhow::Result<()> {
    let (ty, name) = match &a.package {
        None => (0, String::new()),
        Some(p) => {
            let (t, n) = p
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--package {p:?}: expected TYPE:NAME, as in pypi:botocore"))?;
            (
                t.parse::<PackageType>()
                    .map_err(|e| anyhow::anyhow!("--package {p:?}: {e}"))? as i32,
                n.to_string(),
            )
        }
    };
    let req = pb::PurgeRequest {
        now: a.now,
        namespace: a.namespace.clone().unwrap_or_default(),
        project: a.project.clone().unwrap_or_default(),
        r#type: ty,
        name,
    };
    let r = connect(conn).await?.admin.purge(req).await.map_err(fail)?.into_inner();
    let (files_b, files_n) = held(&r.held_by_files);
    let (lease_b, lease_n) = held(&r.held_by_lease);
    let (ns_b, ns_n) = held(&r.held_by_other_namespaces);
    if a.json {
        let pair = |b: u64, n: u64| json!({"blobs": b, "bytes": n});
        let v = json!({
            "packages": r.packages,
            "versions": r.versions,
            "files": r.files,
            "references_released": r.references_released,
            "blobs_unreferenced": r.blobs_unreferenced,
            "bytes_condemned": r.bytes_condemned,
            "collectable_after_unix_ms": r.collectable_after_unix_ms,
            "held_by_files": pair(files_b, files_n),
            "held_by_lease": pair(lease_b, lease_n),
            "lease_until_unix_ms": r.lease_until_unix_ms,
            "held_by_other_namespaces": pair(ns_b, ns_n),
            "trash_files": r.trash_files,
            "trash_bytes": r.trash_bytes,
            "trash_next_due_unix_ms": r.trash_next_due_unix_ms,
            "held_complete": r.held_complete,
        });
        return emit(|w| writeln!(w, "{v}"));
    }
    let dash = || "-".to_string();
    let row = |what: &str, count: Option<u64>, bytes: Option<u64>, until: String| {
        let count = count.map_or_else(dash, |n| n.to_string());
        vec![what.to_string(), count, bytes.map_or_else(dash, size), until]
    };
    let rows = vec![
        row("packages purged", Some(r.packages), None, dash()),
        row("versions purged", Some(r.versions), None, dash()),
        row("files purged", Some(r.files), None, dash()),
        row("references released", Some(r.references_released), None, dash()),
        row("blobs no one holds", Some(r.blobs_unreferenced), None, dash()),
        row(
            "condemned: gc collects after",
            None,
            Some(r.bytes_condemned),
            if r.bytes_condemned > 0 {
                time(r.collectable_after_unix_ms)
            } else {
                dash()
            },
        ),
        row("still held by other files", Some(files_b), Some(files_n), dash()),
        row(
            "still held by upload lease",
            Some(lease_b),
            Some(lease_n),
            if lease_b > 0 {
                time(r.lease_until_unix_ms)
            } else {
                dash()
            },
        ),
        row("still held by other namespaces", Some(ns_b), Some(ns_n), dash()),
        row(
            "files left in the trash",
            Some(r.trash_files),
            Some(r.trash_bytes),
            if r.trash_next_due_unix_ms > 0 {
                time(r.trash_next_due_unix_ms)
            } else {
                dash()
            },
        ),
    ];
    emit(|w| {
        table(w, &["WHAT", "COUNT", "SIZE", "UNTIL"], rows)?;
        if !r.held_complete {
            writeln!(
                w,
                "(more references were released than were looked at: the held rows are partial)"
            )?;
        }
        Ok(())
    })
}

pub async fn gc(conn: &Conn, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let r = connect(conn)
        .await?
        .retention
        .collect_garbage(pb::GcRequest { dry_run })
        .await
        .map_err(fail)?
        .into_inner();
    if json {
        let v = json!({
            "dry_run": r.dry_run,
            "chunks_collected": r.chunks_collected,
            "bytes_collected": r.bytes_collected,
            "chunks_condemned": r.chunks_condemned,
            "bytes_condemned": r.bytes_condemned,
            "packs_compacted": r.packs_compacted,
            "records_copied": r.records_copied,
            "bytes_copied": r.bytes_copied,
            "packs_deferred": r.packs_deferred,
            "packs_deleted": r.packs_deleted,
            "bytes_deleted": r.bytes_deleted,
            "dead_bytes": r.dead_bytes,
            "elapsed_ms": r.elapsed_ms,
        });
        return emit(|w| writeln!(w, "{v}"));
    }
    let verb = |done: &str, would: &str| if r.dry_run { would.to_string() } else { done.to_string() };
    let row = |what: String, count: String, bytes: u64| vec![what, count, size(bytes)];
    let rows = vec![
        row(
            verb("chunks collected", "chunks to collect"),
            r.chunks_collected.to_string(),
            r.bytes_collected,
        ),
        row(
            verb(
                "packs compacted (live bytes copied)",
                "packs to compact (live bytes to copy)",
            ),
            r.packs_compacted.to_string(),
            r.bytes_copied,
        ),
        row("packs deferred".into(), r.packs_deferred.to_string(), 0),
        row(
            verb("packs deleted", "packs to delete"),
            r.packs_deleted.to_string(),
            r.bytes_deleted,
        ),
        row(
            "chunks still condemned (in grace)".into(),
            r.chunks_condemned.to_string(),
            r.bytes_condemned,
        ),
        row("dead bytes left in packs".into(), "-".into(), r.dead_bytes),
    ];
    emit(|w| {
        table(w, &["WHAT", "COUNT", "SIZE"], rows)?;
        let what = if r.dry_run { "dry run (nothing changed)" } else { "run" };
        writeln!(w, "{what} in {} ms", r.elapsed_ms)
    })
}

pub async fn stats(conn: &Conn, json: bool) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    let s = client
        .admin
        .clone()
        .stats(pb::StatsRequest { space: true })
        .await
        .map_err(fail)?
        .into_inner();
    let sp = s.space.unwrap_or_default();
    let o = s.optimize.unwrap_or_default();
    if json {
        let v = json!({
            "logical_bytes": s.logical_bytes,
            "unique_bytes": s.unique_bytes,
            "physical_bytes": s.physical_bytes,
            "dedup_ratio": s.dedup_ratio,
            "compression_ratio": s.compression_ratio,
            "chunks": s.chunks,
            "packs": s.packs,
            "blobs": s.blobs,
            "references": s.references,
            "pack_bytes": s.pack_bytes,
            "condemned_bytes": s.condemned_bytes,
            "dead_bytes": s.dead_bytes,
            "packages": s.package_count,
            "versions": s.version_count,
            "files": s.file_count,
            "trash_files": s.trash_files,
            "trash_bytes": s.trash_bytes,
            "leased_blobs": s.leased_blobs,
            "leased_bytes": s.leased_bytes,
            "free_disk_bytes": s.free_disk_bytes,
            "space": space_json(&sp),
            "optimize": optimize_json(&o),
        });
        return emit(|w| writeln!(w, "{v}"));
    }
    let count = |what: &str, n: u64| vec![what.to_string(), n.to_string()];
    let bytes = |what: &str, n: u64| vec![what.to_string(), size(n)];
    let figures = vec![
        bytes("logical", s.logical_bytes),
        bytes("unique", s.unique_bytes),
        bytes("physical", s.physical_bytes),
        vec!["dedup ratio".into(), format!("{:.3}", s.dedup_ratio)],
        vec!["compression ratio".into(), format!("{:.3}", s.compression_ratio)],
        count("packages", s.package_count),
        count("versions", s.version_count),
        count("files", s.file_count),
        count("files in the trash", s.trash_files),
        count("blobs", s.blobs),
        count("chunks", s.chunks),
        count("references", s.references),
        count("packs", s.packs),
        vec!["free disk".into(), s.free_disk_bytes.map_or("-".into(), size)],
    ];
    emit(|w| {
        table(w, &["FIGURE", "VALUE"], figures)?;
        writeln!(w)?;
        space_table(w, &sp)?;
        writeln!(w)?;
        optimize_table(w, &o)
    })
}

pub(super) fn optimize_json(o: &pb::OptimizeTotals) -> Value {
    json!({
        "optimized_blobs": o.optimized_blobs,
        "optimized_bytes": o.optimized_bytes,
        "zip_bytes": o.zip_bytes,
        "gzip_bytes": o.gzip_bytes,
        "tar_bytes": o.tar_bytes,
        "nested_bytes": o.nested_bytes,
        "zlib_streams": o.zlib_streams,
        "preflate_streams": o.preflate_streams,
        "opaque_streams": o.opaque_streams,
        "raw_blobs": o.raw_blobs,
        "raw_bytes": o.raw_bytes,
        "released_bytes": o.released_bytes,
        "added_bytes": o.added_bytes,
    })
}

/// What the optimizer did, one row per figure: what, blobs or streams,
/// bytes ("-" where a column does not apply).
pub(super) fn optimize_rows(o: &pb::OptimizeTotals) -> Vec<Vec<String>> {
    let saved = o.released_bytes as i64 - o.added_bytes as i64;
    vec![
        vec![
            "stored as recipes".into(),
            o.optimized_blobs.to_string(),
            size(o.optimized_bytes),
        ],
        vec!["  outer zip".into(), "-".into(), size(o.zip_bytes)],
        vec!["  outer gzip".into(), "-".into(), size(o.gzip_bytes)],
        vec!["  holding a tar".into(), "-".into(), size(o.tar_bytes)],
        vec!["  nested containers".into(), "-".into(), size(o.nested_bytes)],
        vec![
            "  streams recreated by zlib".into(),
            o.zlib_streams.to_string(),
            "-".into(),
        ],
        vec![
            "  streams recreated by preflate".into(),
            o.preflate_streams.to_string(),
            "-".into(),
        ],
        vec![
            "  streams kept compressed".into(),
            o.opaque_streams.to_string(),
            "-".into(),
        ],
        vec!["kept raw".into(), o.raw_blobs.to_string(), size(o.raw_bytes)],
        vec![
            "stored bytes saved (released - added)".into(),
            "-".into(),
            match saved {
                n if n < 0 => format!("-{}", size(n.unsigned_abs())),
                n => size(n as u64),
            },
        ],
    ]
}

pub(super) fn optimize_table(w: &mut dyn Write, o: &pb::OptimizeTotals) -> std::io::Result<()> {
    table(w, &["OPTIMIZER", "BLOBS", "BYTES"], optimize_rows(o))
}

pub(super) fn space_json(s: &pb::StoreSpace) -> Value {
    json!({
        "active_bytes": s.active_bytes,
        "trash_bytes": s.trash_bytes,
        "lease_bytes": s.lease_bytes,
        "condemned_bytes": s.condemned_bytes,
        "dead_bytes": s.dead_bytes,
        "retired_pack_bytes": s.retired_pack_bytes,
        "pack_overhead_bytes": s.pack_overhead_bytes,
        "pack_bytes": s.pack_bytes,
        "packs_elsewhere_bytes": s.packs_elsewhere_bytes,
        "index_bytes": s.index_bytes,
        "daemon_files_bytes": s.daemon_files_bytes,
        "other_bytes": s.other_bytes,
        "total_bytes": s.total_bytes,
        "data_dir_bytes": s.data_dir_bytes,
    })
}

/// The named buckets in the order every view shows them; they add up to
/// `total_bytes`.
pub(super) fn buckets(s: &pb::StoreSpace) -> [(&'static str, u64); 10] {
    [
        ("active files", s.active_bytes),
        ("trash", s.trash_bytes),
        ("held by upload lease", s.lease_bytes),
        ("condemned (gc after grace)", s.condemned_bytes),
        ("dead in packs", s.dead_bytes),
        ("retired packs", s.retired_pack_bytes),
        ("pack overhead", s.pack_overhead_bytes),
        ("index (RocksDB)", s.index_bytes),
        ("daemon files", s.daemon_files_bytes),
        ("other files", s.other_bytes),
    ]
}

/// The buckets as a table, their sum beside the data dir's measured size.
pub(super) fn space_table(w: &mut dyn Write, s: &pb::StoreSpace) -> std::io::Result<()> {
    let share = |n: u64| match s.total_bytes {
        0 => "-".to_string(),
        t => format!("{:.1}%", 100.0 * n as f64 / t as f64),
    };
    let row = |what: &str, n: u64| vec![what.to_string(), size(n), share(n)];
    let mut rows: Vec<_> = buckets(s).iter().map(|(what, n)| row(what, *n)).collect();
    if s.packs_elsewhere_bytes > 0 {
        rows.push(vec![
            "packs in the pack store (not in the data dir)".into(),
            size(s.packs_elsewhere_bytes),
            "-".into(),
        ]);
    }
    rows.push(vec!["total".into(), size(s.total_bytes), share(s.total_bytes)]);
    rows.push(vec!["data dir, measured".into(), size(s.data_dir_bytes), "-".into()]);
    table(w, &["BUCKET", "SIZE", "SHARE"], rows)
}
