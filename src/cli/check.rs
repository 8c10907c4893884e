//! `admin check` output for damaged packs (the catalog part is in `catalog`).

use anyhow::bail;
use serde_json::{Value, json};

use super::output::emit;
use crate::api::pb;

pub(super) fn damage_json(d: &[pb::PackDamage]) -> Value {
    d.iter()
        .map(|d| json!({"pack": d.pack, "location": d.location, "offset": d.offset, "problem": d.problem}))
        .collect()
}

/// One line per damaged record, and what a `--read-data` run read.
pub(super) fn print_damage(r: &pb::CheckResponse, read_data: bool) -> anyhow::Result<()> {
    emit(|w| {
        if r.quarantined_packs > 0 {
            writeln!(
                w,
                "quarantined: {} staged pack(s) found damaged at start (kept readable, not cut)",
                r.quarantined_packs
            )?;
        }
        for d in &r.damage {
            writeln!(
                w,
                "damage: pack {} ({}) at offset {}: {}",
                d.pack, d.location, d.offset, d.problem
            )?;
        }
        if read_data {
            writeln!(
                w,
                "read-data: {} packs, {} records intact, {} bytes read",
                r.packs_verified, r.records_verified, r.bytes_verified
            )?;
        }
        Ok(())
    })
}

/// Fails on drift or damage.
pub(super) fn verdict(r: &pb::CheckResponse) -> anyhow::Result<()> {
    match (r.drift.len(), r.damage.len() as u64 + r.quarantined_packs) {
        (0, 0) => Ok(()),
        (n, 0) => bail!("{n} drift(s) found"),
        (0, _) => bail!("{} damaged record(s) in packs", r.damage.len()),
        (n, _) => bail!("{n} drift(s) found and {} damaged record(s) in packs", r.damage.len()),
    }
}
