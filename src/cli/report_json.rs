//! The JSON form of a capacity report's trends, provenance, background
//! runs and what could be freed (`stowage report --format json`).

use serde_json::{Map, Value, json};

use crate::api::pb;

fn growth(g: &Option<pb::Growth>) -> Value {
    let g = g.unwrap_or_default();
    json!({
        "days": g.days,
        "since_day": g.since_day,
        "file_bytes": g.file_bytes,
        "physical_bytes": g.physical_bytes,
    })
}

fn run(r: &Option<pb::BackgroundRun>) -> Value {
    let r = r.unwrap_or_default();
    json!({
        "interval_ms": r.interval_ms,
        "runs": r.runs,
        "last_run_ms": r.last_run_ms,
        "last_elapsed_ms": r.last_elapsed_ms,
        "next_run_ms": r.next_run_ms,
        "running": r.running,
    })
}

fn idle(i: &Option<pb::IdlePackages>) -> Value {
    let i = i.clone().unwrap_or_default();
    json!({
        "packages": i.packages,
        "files": i.files,
        "logical_bytes": i.logical_bytes,
        "exclusive_bytes": i.exclusive_bytes,
        "largest": i.largest.iter().map(|p| json!({
            "package": p.package,
            "files": p.files,
            "logical_bytes": p.logical_bytes,
            "exclusive_bytes": p.exclusive_bytes,
            "last_download_ms": p.last_download_ms,
        })).collect::<Vec<_>>(),
    })
}

/// The fields `report --format json` adds to the summary and groups.
pub(super) fn extras(r: &pb::CapacityReport) -> Map<String, Value> {
    let d = r.daemon.clone().unwrap_or_default();
    let v = json!({
        "generated_ms": r.generated_ms,
        "daemon": {
            "version": d.version,
            "started_ms": d.started_ms,
            "data_dir": d.data_dir,
            "host": d.host,
        },
        "days": r.days.iter().map(|d| json!({
            "day": d.day,
            "logical_bytes": d.logical_bytes,
            "unique_bytes": d.unique_bytes,
            "physical_bytes": d.physical_bytes,
            "pack_bytes": d.pack_bytes,
            "files": d.files,
            "file_bytes": d.file_bytes,
            "packages": d.packages,
        })).collect::<Vec<_>>(),
        "growth_30d": growth(&r.growth_30d),
        "growth_90d": growth(&r.growth_90d),
        "fastest_growing": r.fastest_growing.iter().map(|p| json!({
            "package": p.package,
            "bytes": p.bytes,
            "growth_30d": p.growth_30d,
        })).collect::<Vec<_>>(),
        "gc": run(&r.gc),
        "sweep": run(&r.sweep),
        "freeable": r.freeable.as_ref().map(|f| json!({
            "idle_days": f.idle_days,
            "never_downloaded": idle(&f.never_downloaded),
            "not_downloaded": idle(&f.not_downloaded),
            "policies": f.policies.iter().map(|p| json!({
                "policy": p.policy,
                "namespace": p.namespace,
                "project": p.project,
                "versions": p.versions,
                "files": p.files,
                "logical_bytes": p.logical_bytes,
                "unique_bytes": p.unique_bytes,
                "physical_bytes": p.physical_bytes,
            })).collect::<Vec<_>>(),
        })),
    });
    v.as_object().cloned().unwrap_or_default()
}
