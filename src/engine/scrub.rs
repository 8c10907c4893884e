//! Reading every pack back: `admin check --read-data` and the throttled
//! background scrubber. Both run [`crate::pack::verify::verify_pack`] over
//! every sealed pack in the pack store and every staged pack, so damage is
//! found before someone reads the damaged chunk. The scrubber makes a full
//! pass every `scrub.interval` at most `scrub.rate` bytes per second; its
//! progress and findings are in `/metrics` and each damaged pack is logged
//! as an error. Staged packs quarantined at start (see `crate::recovery`)
//! are reported by every `admin check`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Engine;
use crate::background::{Next, Worker};
use crate::catalog::CheckReport;
use crate::error::{Error, Result};
use crate::index::PackState;
use crate::pack::OpenPack;
use crate::pack::verify::{self, DataCheck, Layout, PackDamage, Source, Verified};

/// The first pass starts at most this long after the daemon does.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(600);

/// The scrubber's totals since start, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct ScrubStatus {
    pub bytes: u64,
    pub packs: u64,
    pub records: u64,
    pub passes: u64,
    /// Findings of every pass since start.
    pub findings: u64,
    /// When the last pass finished (Unix ms; 0: none yet).
    pub last_pass_end_ms: i64,
    /// Damaged packs and findings of the last finished pass.
    pub last_damaged_packs: u64,
    pub last_damaged_records: u64,
    /// Bytes of the pass in progress: done and total (0/0: none running).
    pub pass_done: u64,
    pub pass_total: u64,
}

/// Shared by the scrubber and `/metrics`.
#[derive(Default)]
pub struct Scrubber {
    status: Mutex<ScrubStatus>,
}

impl Scrubber {
    pub fn status(&self) -> ScrubStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn update(&self, f: impl FnOnce(&mut ScrubStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Reads of a sealed pack in the store, from a blocking thread.
struct StoreSource {
    engine: Arc<Engine>,
    id: u64,
    rt: tokio::runtime::Handle,
}

impl Source for StoreSource {
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let range = offset..offset + len as u64;
        Ok(self.rt.block_on(self.engine.store.get_range(self.id, range))?.to_vec())
    }
}

/// Reads of a staged pack through its open file.
struct StagedSource(Arc<OpenPack>);

impl Source for StagedSource {
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.0.read_at(offset, len as u64)
    }
}

/// Called with the bytes of each read; false stops the run.
type Pace = Arc<dyn Fn(u64) -> bool + Send + Sync>;

impl Engine {
    /// Staged packs quarantined at start as damaged, one line per problem.
    pub fn quarantined(&self) -> Vec<PackDamage> {
        let mut out = Vec::new();
        for p in self.packer.staged_all() {
            for d in p.damage().unwrap_or_default() {
                out.push(PackDamage {
                    pack: p.id,
                    location: "staging",
                    offset: 0,
                    problem: format!("quarantined at start: {d}"),
                });
            }
        }
        out
    }

    pub fn quarantined_packs(&self) -> u64 {
        self.packer.staged_all().iter().filter(|p| p.is_quarantined()).count() as u64
    }

    pub fn scrub_status(&self) -> ScrubStatus {
        self.scrub.status()
    }

    /// What `admin check` adds to the catalog check: the quarantined
    /// packs, and with `read_data` a read of every pack.
    pub(crate) async fn check_packs(self: &Arc<Self>, r: &mut CheckReport, read_data: bool) -> Result<()> {
        r.quarantined_packs = self.quarantined_packs();
        r.damage = self.quarantined();
        if read_data {
            let stop = self.stop.clone();
            let data = self
                .read_all_packs(Arc::new(move |_| !stop.is_cancelled()), false)
                .await?;
            r.damage.extend(data.damage.iter().cloned());
            r.data = Some(data);
        }
        Ok(())
    }

    /// Verifies every sealed pack in the store and every staged pack.
    /// `scrubbing`: the pass's progress goes into the scrubber's status.
    pub async fn read_all_packs(self: &Arc<Self>, pace: Pace, scrubbing: bool) -> Result<DataCheck> {
        let sealed: Vec<(u64, u64)> = self
            .index
            .packs()?
            .into_iter()
            .filter(|(_, i)| i.state == PackState::Sealed)
            .map(|(id, i)| (id, i.size))
            .collect();
        let staged: Vec<Arc<OpenPack>> = self
            .packer
            .staged_all()
            .into_iter()
            .filter(|p| !sealed.iter().any(|(id, _)| *id == p.id))
            .collect();
        let total = sealed.iter().map(|p| p.1).sum::<u64>() + staged.iter().map(|p| p.size()).sum::<u64>();
        if scrubbing {
            self.scrub.update(|s| (s.pass_done, s.pass_total) = (0, total));
        }
        let mut out = DataCheck::default();
        for (id, size) in sealed {
            let src = StoreSource {
                engine: self.clone(),
                id,
                rt: tokio::runtime::Handle::current(),
            };
            match self
                .verify_one(Box::new(src), id, size, Layout::Sealed, pace.clone())
                .await
            {
                Ok(v) => out.add(id, "store", &v),
                // Compacted and deleted since the listing: nothing to check.
                Err(_) if !self.index.pack(id)?.is_some_and(|i| i.state == PackState::Sealed) => {}
                Err(Error::Corrupt(e)) => out.add(id, "store", &unreadable(e)),
                Err(e) => return Err(e),
            }
            if self.stop.is_cancelled() {
                break;
            }
        }
        for p in staged {
            // An unsealed pack is checked up to what was appended when it
            // was looked at; appends go on meanwhile.
            let (size, layout) = match p.is_sealed() {
                true => (p.size(), Layout::Sealed),
                false => (p.len(), Layout::Open),
            };
            let id = p.id;
            match self
                .verify_one(Box::new(StagedSource(p)), id, size, layout, pace.clone())
                .await
            {
                Ok(v) => out.add(id, "staging", &v),
                Err(Error::Corrupt(e)) => out.add(id, "staging", &unreadable(e)),
                Err(e) => return Err(e),
            }
            if self.stop.is_cancelled() {
                break;
            }
        }
        Ok(out)
    }

    async fn verify_one(
        self: &Arc<Self>,
        mut src: Box<dyn Source + Send>,
        id: u64,
        size: u64,
        layout: Layout,
        pace: Pace,
    ) -> Result<Verified> {
        let v = tokio::task::spawn_blocking(move || verify::verify_pack(&mut *src, id, size, layout, &mut |n| pace(n)))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if !v.is_clean() {
            tracing::error!(
                pack = %format!("{id:016x}"),
                damaged = v.damage(),
                intact_records = v.records_ok,
                findings = ?v.findings.iter().take(10).map(|f| format!("offset {}: {}", f.offset, f.problem)).collect::<Vec<_>>(),
                "pack is DAMAGED"
            );
        }
        Ok(v)
    }

    /// Counts bytes into the status and sleeps to keep under `rate` bytes/s;
    /// answers false once the daemon stops.
    fn pacer(self: &Arc<Self>, rate: u64) -> Pace {
        let this = Arc::downgrade(self);
        let stop = self.stop.clone();
        let start = Instant::now();
        let done = Arc::new(Mutex::new(0u64));
        Arc::new(move |n| {
            let total = {
                let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
                *d += n;
                *d
            };
            if let Some(e) = this.upgrade() {
                e.scrub.update(|s| {
                    s.bytes += n;
                    s.pass_done = total;
                });
            }
            let due = Duration::from_secs_f64(total as f64 / rate.max(1) as f64);
            while !stop.is_cancelled() {
                let ahead = due.saturating_sub(start.elapsed());
                if ahead.is_zero() {
                    break;
                }
                std::thread::sleep(ahead.min(Duration::from_millis(100)));
            }
            !stop.is_cancelled()
        })
    }
}

/// Full passes every `scrub.interval`, at most `scrub.rate` bytes/s (the
/// caller spawns it only when `scrub.enabled`).
pub(super) struct ScrubWorker {
    pub engine: Arc<Engine>,
    pub waited: bool,
}

impl Worker for ScrubWorker {
    fn name(&self) -> &'static str {
        "scrub"
    }

    async fn work(&mut self) -> Result<Next> {
        let cfg = self.engine.cfg.scrub;
        if !self.waited {
            self.waited = true;
            return Ok(Next::Idle(cfg.interval.min(FIRST_PASS_AFTER)));
        }
        let e = &self.engine;
        let started = Instant::now();
        match e.read_all_packs(e.pacer(cfg.rate.as_u64()), true).await {
            Ok(_) if e.stop.is_cancelled() => return Ok(Next::Done),
            Ok(d) => {
                e.scrub.update(|s| {
                    s.passes += 1;
                    s.packs += d.packs;
                    s.records += d.records;
                    s.findings += d.damaged_records;
                    s.last_pass_end_ms = crate::now_ms();
                    s.last_damaged_packs = d.damaged_packs;
                    s.last_damaged_records = d.damaged_records;
                    (s.pass_done, s.pass_total) = (0, 0);
                });
                let took_s = started.elapsed().as_secs();
                match d.damaged_packs {
                    0 => tracing::info!(packs = d.packs, bytes = d.bytes, took_s, "scrub pass found no damage"),
                    n => tracing::error!(
                        packs = d.packs,
                        damaged_packs = n,
                        damaged = d.damaged_records,
                        took_s,
                        "scrub pass found DAMAGED packs"
                    ),
                }
            }
            Err(err) => {
                e.scrub.update(|s| (s.pass_done, s.pass_total) = (0, 0));
                tracing::error!(error = %err, "scrub pass failed; the next one retries")
            }
        }
        Ok(Next::Idle(cfg.interval.saturating_sub(started.elapsed())))
    }
}

/// A pack that could not be read at all (missing, shorter than listed).
fn unreadable(e: String) -> Verified {
    let mut v = Verified::default();
    v.findings.push(verify::Finding {
        offset: 0,
        problem: format!("cannot be read: {e}"),
    });
    v
}
