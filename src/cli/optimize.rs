//! `stowage optimize`: runs the package-aware optimizer now, with a
//! progress bar on a terminal; a table of what it did at the end, or with
//! `--json` one JSON line per progress message.

use std::io::IsTerminal;

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;

use super::output::{emit, size, table};
use super::{Conn, connect, fail};
use crate::api::pb;

pub async fn run(conn: &Conn, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let mut stream = connect(conn)
        .await?
        .admin
        .optimize(pb::OptimizeRequest { dry_run })
        .await
        .map_err(fail)?
        .into_inner();
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} blobs  {msg}")
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
                    "{} optimized, {} released",
                    p.optimized,
                    size(p.released_bytes)
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
    let p = last.context("the optimizer ended without a report")?;
    if json {
        return Ok(());
    }
    let would = |done: &str, would: &str| if p.dry_run { would.to_string() } else { done.to_string() };
    let count = |what: String, n: u64, bytes: String| vec![what, n.to_string(), bytes];
    let bytes = |what: String, n: u64| vec![what, "-".to_string(), size(n)];
    let rows = vec![
        count("blobs looked at".into(), p.done, String::new()),
        count(
            would("stored as recipes", "would be stored as recipes"),
            p.optimized,
            size(p.optimized_bytes),
        ),
        count("kept raw: not a package container".into(), p.opaque, String::new()),
        count("kept raw: no saving".into(), p.no_saving, String::new()),
        count(
            "kept raw: larger than optimize.max_blob".into(),
            p.too_large,
            String::new(),
        ),
        count("failed (tried again next pass)".into(), p.failed, String::new()),
        bytes(
            would("stored bytes released (freed by GC)", "stored bytes it would release"),
            p.released_bytes,
        ),
        bytes(would("stored bytes added", "stored bytes it would add"), p.added_bytes),
        count(
            "deflate streams recreated by zlib".into(),
            p.zlib_streams,
            String::new(),
        ),
        count(
            "deflate streams recreated by preflate".into(),
            p.preflate_streams,
            String::new(),
        ),
        count(
            "deflate streams kept compressed".into(),
            p.opaque_streams,
            String::new(),
        ),
        count(
            would("new chunks stored as deltas", "new chunks it would store as deltas"),
            p.deltas,
            size(p.delta_bytes),
        ),
        bytes(
            would("stored bytes deltas saved", "stored bytes deltas would save"),
            p.delta_saved_bytes,
        ),
    ];
    emit(|w| table(w, &["", "COUNT", "BYTES"], rows))
}

fn progress_json(p: &pb::OptimizeProgress) -> serde_json::Value {
    json!({
        "total": p.total,
        "done": p.done,
        "optimized": p.optimized,
        "optimized_bytes": p.optimized_bytes,
        "opaque": p.opaque,
        "no_saving": p.no_saving,
        "too_large": p.too_large,
        "failed": p.failed,
        "released_bytes": p.released_bytes,
        "added_bytes": p.added_bytes,
        "zlib_streams": p.zlib_streams,
        "preflate_streams": p.preflate_streams,
        "opaque_streams": p.opaque_streams,
        "deltas": p.deltas,
        "delta_bytes": p.delta_bytes,
        "delta_saved_bytes": p.delta_saved_bytes,
        "dry_run": p.dry_run,
        "finished": p.finished,
    })
}
