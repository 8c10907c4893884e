//! `stowage-load --mode crash-soak`: kill -9 cycles under mixed load.
//!
//! Runs its own daemon (`--stowage-bin`) on a loopback port in `--work-dir`
//! with short settings (256 KiB packs sealed after 1 s, 20 s upload leases,
//! 2 s trash, purge every second, GC every 2 s with 1 s grace and 1 s pack
//! delete delay), and for each of `--cycles` cycles:
//! 1. (every third cycle) starts the daemon and kills it during startup;
//! 2. starts it, and runs puts (incompressible, text-like and partly
//!    deduplicated bytes, 100 B to 1.5 MiB), streamed publishes, publishes by
//!    BLAKE3 of earlier puts, file deletes and GC runs from a few clients,
//!    journaling every acknowledged one;
//! 3. kills the daemon with SIGKILL at a random moment;
//! 4. restarts it and verifies every acknowledged write: each put whose
//!    upload lease has not ended (it ends at the first publish by its hash;
//!    re-putting starts a new one) (or that an acknowledged, never-deleted
//!    file holds) reads back byte-exact (regenerated from its seed); each
//!    acknowledged, never-deleted file is active in its version with its
//!    BLAKE3 and size and its bytes read back exact; each acknowledged delete
//!    is deleted (or purged); then runs `stowage admin check`.
//!
//! Any loss, mismatch or drift stops the soak with an error. Per cycle and
//! at the end it prints acknowledged and verified counts per kind.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use stowage::api::client::{Client, Code, header, version_ref};
use stowage::api::pb::{self, PackageType};

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// crash-soak: kill -9 cycles to run.
    #[arg(long, default_value_t = 10)]
    pub cycles: u64,
    /// crash-soak: the daemon binary.
    #[arg(long, default_value = "target/release/stowage")]
    pub stowage_bin: PathBuf,
    /// crash-soak: folder for the daemon's data (must be empty or absent).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// crash-soak: seed of the load (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// crash-soak: stop after the cycle that passes this many minutes (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    pub max_minutes: f64,
}

const NS: &str = "soak";
const LEASE_MS: i64 = 20_000;
/// A put is checked while its lease has at least this long to run.
const LEASE_MARGIN_MS: i64 = 4_000;
const CLIENTS: usize = 3;
/// Keep the set of live files (verified after every cycle) bounded.
const MAX_LIVE_FILES: usize = 600;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The bytes of a put or published file, from its seed.
fn content(seed: u64, len: usize) -> Bytes {
    let mut r = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    match seed % 3 {
        0 => r.fill_bytes(&mut v),
        1 => {
            const WORDS: &[&[u8]] = &[
                b"package ",
                b"version ",
                b"lodash ",
                b"1.2.3 ",
                b"{\n",
                b"}\n",
                b"export ",
            ];
            let mut at = 0;
            while at < len {
                let w = WORDS[r.random_range(0..WORDS.len())];
                let n = w.len().min(len - at);
                v[at..at + n].copy_from_slice(&w[..n]);
                at += n;
            }
        }
        _ => {
            // One of 8 shared bases, stamped every 64 KiB: chunks dedupe across blobs.
            StdRng::seed_from_u64(seed % 8).fill_bytes(&mut v);
            for at in (0..len).step_by(64 << 10) {
                let end = (at + 8).min(len);
                v[at..end].copy_from_slice(&seed.to_le_bytes()[..end - at]);
            }
        }
    }
    v.into()
}

fn random_len(r: &mut StdRng) -> usize {
    match r.random_range(0..20) {
        0 => r.random_range(300_000..1_500_000),
        1..=6 => r.random_range(20_000..200_000),
        _ => r.random_range(100..20_000),
    }
}

#[derive(Clone)]
struct Put {
    b3: String,
    seed: u64,
    len: usize,
    /// When the put was sent: its lease runs at least until this + LEASE_MS,
    /// or until a file uses the blob.
    sent_ms: i64,
    /// A publish by this blob's hash was sent after the put: its lease may
    /// have ended there (only live files hold it from then on).
    used: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FileState {
    Active,
    /// A delete was sent and not answered: either state is right.
    DeleteSent,
    Deleted,
}

#[derive(Clone)]
struct File {
    version: pb::VersionRef,
    name: String,
    b3: String,
    seed: u64,
    len: usize,
    state: FileState,
}

#[derive(Default)]
struct Journal {
    puts: Vec<Put>,
    /// By file id.
    files: BTreeMap<u64, File>,
    acked: Counts,
    /// Requests that failed while the daemon was up (before the kill).
    errors: Vec<String>,
}

#[derive(Default, Clone, Copy, Debug)]
struct Counts {
    puts: u64,
    publishes: u64,
    deletes: u64,
    gc_runs: u64,
}

#[derive(Default, Clone, Copy, Debug)]
struct Verified {
    puts: u64,
    /// Puts whose lease ended (their blob may be collected): not checked.
    puts_expired: u64,
    files: u64,
    deletes: u64,
    /// Files whose delete was not answered: either state accepted.
    files_uncertain: u64,
}

struct Daemon {
    bin: PathBuf,
    dir: PathBuf,
    addr: String,
    child: Option<Child>,
}

impl Daemon {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        let child = Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(self.dir.join("stowage.toml"))
            .env("STOWAGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn token(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir().join(stowage::auth::ADMIN_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string())
    }
    /// Waits until the daemon answers; an exit is an error (it refused to start).
    async fn up(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(t) = self.token()
                && let Ok(c) = Client::connect(&self.addr, Some(&t)).await
                && c.stats().await.is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().expect("spawned").try_wait()? {
                self.child = None;
                bail!(
                    "the daemon exited with {status} during startup; see {}",
                    self.dir.join("daemon.log").display()
                );
            }
            ensure!(Instant::now() < deadline, "the daemon did not come up in 120 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.addr, self.token().as_deref()).await?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub async fn run(a: &SoakArgs) -> anyhow::Result<()> {
    let dir = match &a.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("stowage-soak-{}", std::process::id())),
    };
    ensure!(
        !dir.join("data").exists(),
        "{} already holds a data folder",
        dir.display()
    );
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    std::fs::write(
        dir.join("stowage.toml"),
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\npack_target_size = \"256KiB\"\npack_max_age = \"1s\"\n\
             upload_lease = \"{}ms\"\ntrash_window = \"2s\"\npurge_interval = \"1s\"\n\
             [gc]\ninterval = \"2s\"\ngrace = \"1s\"\ncompact_threshold = 0.05\npack_delete_delay = \"1s\"\n",
            dir.join("data"),
            LEASE_MS
        ),
    )?;
    let seed = a.seed.unwrap_or_else(|| now_ms() as u64);
    println!(
        "crash-soak: {} cycles, seed {seed}, data in {}, daemon on 127.0.0.1:{port}",
        a.cycles,
        dir.display()
    );
    let mut d = Daemon {
        bin: a.stowage_bin.clone(),
        dir: dir.clone(),
        addr: format!("http://127.0.0.1:{port}"),
        child: None,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let journal = Arc::new(Mutex::new(Journal::default()));
    let next_seed = Arc::new(std::sync::atomic::AtomicU64::new(seed.wrapping_mul(1_000_003) >> 8));
    let start = Instant::now();
    let mut verified = Verified::default();
    let mut startup_kills = 0;
    d.spawn()?;
    d.up().await?;
    let mut cycles = 0;
    for cycle in 1..=a.cycles {
        if a.max_minutes > 0.0 && start.elapsed().as_secs_f64() > a.max_minutes * 60.0 {
            println!(
                "crash-soak: --max-minutes {} reached after {} cycles",
                a.max_minutes, cycles
            );
            break;
        }
        cycles = cycle;
        // Load, then a kill at a random moment.
        let run_for = Duration::from_millis(rng.random_range(300..2500));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..CLIENTS {
            let c = d.client().await?;
            let (journal, stop, next_seed) = (journal.clone(), stop.clone(), next_seed.clone());
            let wseed = rng.next_u64() ^ w as u64;
            tasks.push(tokio::spawn(
                async move { load(c, journal, stop, next_seed, wseed).await },
            ));
        }
        tokio::time::sleep(run_for).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        d.kill9();
        for t in tasks {
            t.await?;
        }
        {
            let j = journal.lock().unwrap();
            if !j.errors.is_empty() {
                bail!("requests failed while the daemon was up: {:#?}", j.errors);
            }
        }
        // Every third cycle, a kill during startup (recovery) first.
        if cycle % 3 == 0 {
            d.spawn()?;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
            d.kill9();
            startup_kills += 1;
        }
        d.spawn()?;
        d.up().await.with_context(|| format!("cycle {cycle}: restart"))?;
        let c = d.client().await?;
        let v = verify(&c, &journal)
            .await
            .with_context(|| format!("cycle {cycle}: verify (seed {seed})"))?;
        check(&d).with_context(|| format!("cycle {cycle}: admin check"))?;
        verified.puts += v.puts;
        verified.puts_expired += v.puts_expired;
        verified.files += v.files;
        verified.deletes += v.deletes;
        verified.files_uncertain += v.files_uncertain;
        let acked = journal.lock().unwrap().acked;
        println!(
            "cycle {cycle}/{}: {:.0}s acked puts {} publishes {} deletes {} gc {} | verified now: puts {} \
             (lease ended: {}), files {}, deletes {} (unanswered: {})",
            a.cycles,
            start.elapsed().as_secs_f64(),
            acked.puts,
            acked.publishes,
            acked.deletes,
            acked.gc_runs,
            v.puts,
            v.puts_expired,
            v.files,
            v.deletes,
            v.files_uncertain
        );
    }
    d.kill9();
    let acked = journal.lock().unwrap().acked;
    println!(
        "crash-soak done: {} cycles ({startup_kills} with a kill during startup) in {:.0} s, seed {seed}\n\
         acknowledged: puts {}, publishes {}, deletes {}, gc runs {}\n\
         verified (summed over the checks after each restart): puts {} byte-exact, files {} active and byte-exact, \
         deletes {}, files with an unanswered delete {}, puts past their lease (not checked) {}\n\
         admin check: clean after every restart; lost or wrong: 0",
        cycles,
        start.elapsed().as_secs_f64(),
        acked.puts,
        acked.publishes,
        acked.deletes,
        acked.gc_runs,
        verified.puts,
        verified.files,
        verified.deletes,
        verified.files_uncertain,
        verified.puts_expired,
    );
    if a.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Whether a worker should stop after this failed request. Once the kill
/// is near every request may fail; before it, only UNAVAILABLE (a put that
/// raced GC, to be retried) is expected: anything else is journaled as an
/// error and ends the soak.
fn give_up(journal: &Mutex<Journal>, stop: &std::sync::atomic::AtomicBool, what: &str, e: &tonic::Status) -> bool {
    if stop.load(std::sync::atomic::Ordering::SeqCst) {
        return true;
    }
    if e.code() == Code::Unavailable {
        return false;
    }
    journal.lock().unwrap().errors.push(format!("{what}: {e:?}"));
    true
}

async fn load(
    c: Client,
    journal: Arc<Mutex<Journal>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    next_seed: Arc<std::sync::atomic::AtomicU64>,
    wseed: u64,
) {
    let mut r = StdRng::seed_from_u64(wseed);
    let stopped = || stop.load(std::sync::atomic::Ordering::SeqCst);
    while !stopped() {
        let roll = r.random_range(0..100);
        let seed = next_seed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if roll < 40 {
            let len = random_len(&mut r);
            let data = content(seed, len);
            let want = blake3::hash(&data).to_hex().to_string();
            let sent_ms = now_ms();
            match c.put_bytes(header(NS), data).await {
                Ok(resp) => {
                    let b3 = resp.digests.map(|d| d.blake3).unwrap_or_default();
                    let mut j = journal.lock().unwrap();
                    if b3 != want {
                        j.errors.push(format!("put answered blake3 {b3}, sent {want}"));
                    }
                    j.acked.puts += 1;
                    j.puts.push(Put {
                        b3,
                        seed,
                        len,
                        sent_ms,
                        used: false,
                    });
                }
                Err(e) if give_up(&journal, &stop, "put", &e) => return,
                Err(_) => {}
            }
        } else if roll < 70 {
            let pkg = format!("pkg-{}", r.random_range(0..40));
            let v = version_ref(
                NS,
                "soak",
                PackageType::Generic,
                &pkg,
                &format!("1.{}.0", r.random_range(0..20)),
            );
            let name = format!("f-{seed}.tgz");
            // Half streamed, half by BLAKE3 of a recent put still under its lease.
            let recent = if r.random_bool(0.5) {
                let mut j = journal.lock().unwrap();
                let p = j
                    .puts
                    .iter_mut()
                    .rev()
                    .take(50)
                    .find(|p| !p.used && p.sent_ms + LEASE_MS - LEASE_MARGIN_MS > now_ms());
                p.map(|p| {
                    // The publish ends the lease: from now on only a live
                    // file holds the blob.
                    p.used = true;
                    p.clone()
                })
            } else {
                None
            };
            let (res, fseed, len, want) = match recent {
                Some(p) => (c.publish_blob(v.clone(), &name, &p.b3).await, p.seed, p.len, p.b3),
                None => {
                    let len = random_len(&mut r);
                    let data = content(seed, len);
                    let want = blake3::hash(&data).to_hex().to_string();
                    (c.publish_bytes(v.clone(), &name, data).await, seed, len, want)
                }
            };
            match res {
                Ok(resp) => {
                    let f = resp.file.unwrap_or_default();
                    let b3 = f.digests.map(|d| d.blake3).unwrap_or_default();
                    let mut j = journal.lock().unwrap();
                    if b3 != want {
                        j.errors.push(format!("publish answered blake3 {b3}, sent {want}"));
                    }
                    j.acked.publishes += 1;
                    j.files.insert(
                        f.file_id,
                        File {
                            version: v,
                            name,
                            b3,
                            seed: fseed,
                            len,
                            state: FileState::Active,
                        },
                    );
                }
                Err(e) if give_up(&journal, &stop, "publish", &e) => return,
                Err(_) => {}
            }
        } else if roll < 95 {
            // Deletes: more of them once many files are live.
            let target = {
                let mut j = journal.lock().unwrap();
                let live: Vec<u64> = j
                    .files
                    .iter()
                    .filter(|(_, f)| f.state == FileState::Active)
                    .map(|(id, _)| *id)
                    .collect();
                let want = if live.len() > MAX_LIVE_FILES { 95 } else { 82 };
                if live.is_empty() || roll >= want {
                    None
                } else {
                    let id = live[r.random_range(0..live.len())];
                    let f = j.files.get_mut(&id).expect("listed");
                    f.state = FileState::DeleteSent;
                    Some((id, f.version.clone()))
                }
            };
            let Some((id, v)) = target else { continue };
            let req = pb::FileRef {
                version: Some(v),
                file_id: id,
            };
            match c.catalog.clone().delete_file(req).await {
                Ok(_) => {
                    let mut j = journal.lock().unwrap();
                    j.acked.deletes += 1;
                    j.files.get_mut(&id).expect("journaled").state = FileState::Deleted;
                }
                Err(e) if give_up(&journal, &stop, &format!("delete file {id}"), &e) => return,
                Err(_) => {}
            }
        } else {
            match c
                .retention
                .clone()
                .collect_garbage(pb::GcRequest { dry_run: false })
                .await
            {
                Ok(_) => journal.lock().unwrap().acked.gc_runs += 1,
                // A run may be under way already (the daemon's own schedule).
                Err(e) if e.code() == Code::Aborted || e.code() == Code::FailedPrecondition => {}
                Err(e) if give_up(&journal, &stop, "gc", &e) => return,
                Err(_) => {}
            }
        }
    }
}

async fn read_exact(c: &Client, b3: &str, seed: u64, len: usize, what: &str) -> anyhow::Result<()> {
    let got = c
        .get_bytes(NS, b3, 0, None)
        .await
        .map_err(|e| anyhow!("{what} {b3}: read failed: {e:?}"))?;
    ensure!(
        got.len() == len && got[..] == content(seed, len)[..],
        "{what} {b3}: read back {} bytes that differ from the {len} stored",
        got.len()
    );
    Ok(())
}

/// A version and the journaled files in it.
type VersionFiles<'a> = (pb::VersionRef, Vec<(u64, &'a File)>);

async fn verify(c: &Client, journal: &Mutex<Journal>) -> anyhow::Result<Verified> {
    let (puts, files) = {
        let j = journal.lock().unwrap();
        (j.puts.clone(), j.files.clone())
    };
    let mut v = Verified::default();
    // Blobs that live files hold (never-deleted, acknowledged publishes).
    let held: std::collections::HashSet<&str> = files
        .values()
        .filter(|f| f.state == FileState::Active)
        .map(|f| f.b3.as_str())
        .collect();
    // The latest put of each blob starts its lease.
    let mut latest: HashMap<&str, &Put> = HashMap::new();
    for p in &puts {
        latest.insert(&p.b3, p);
    }
    for p in latest.values() {
        if held.contains(p.b3.as_str()) || (!p.used && p.sent_ms + LEASE_MS - LEASE_MARGIN_MS > now_ms()) {
            read_exact(c, &p.b3, p.seed, p.len, "acknowledged put").await?;
            v.puts += 1;
        } else {
            v.puts_expired += 1;
        }
    }
    // Forget puts nobody can rely on any more, so the journal stays bounded.
    {
        let now = now_ms();
        let mut j = journal.lock().unwrap();
        j.puts
            .retain(|p| held.contains(p.b3.as_str()) || (!p.used && p.sent_ms + LEASE_MS > now));
    }
    // Files, one GetVersion per version.
    let mut by_version: BTreeMap<String, VersionFiles> = BTreeMap::new();
    for (id, f) in &files {
        let key = format!("{:?}", f.version);
        by_version
            .entry(key)
            .or_insert_with(|| (f.version.clone(), Vec::new()))
            .1
            .push((*id, f));
    }
    let mut resolved = Vec::new();
    for (_, (vref, fs)) in by_version {
        let ver = match c
            .catalog
            .clone()
            .get_version(pb::GetVersionRequest {
                r#ref: Some(vref.clone()),
            })
            .await
        {
            Ok(r) => Some(r.into_inner()),
            Err(e) if e.code() == Code::NotFound => None,
            Err(e) => bail!("get version {vref:?}: {e:?}"),
        };
        let listed: HashMap<u64, &pb::PackageFile> = ver
            .as_ref()
            .map(|v| v.file_list.iter().map(|f| (f.file_id, f)).collect())
            .unwrap_or_default();
        for (id, f) in fs {
            let active = listed.get(&id).filter(|pf| pf.deleted_unix_ms.is_none());
            match f.state {
                FileState::Active => {
                    let pf = active.ok_or_else(|| {
                        anyhow!(
                            "acknowledged file {id} ({}) of {vref:?} is not active: {:?}",
                            f.name,
                            listed.get(&id)
                        )
                    })?;
                    let b3 = pf.digests.as_ref().map(|d| d.blake3.as_str()).unwrap_or("");
                    ensure!(
                        b3 == f.b3 && pf.size == f.len as u64 && pf.file_name == f.name,
                        "file {id}: catalog says {} {b3} {} bytes, published {} {} {} bytes",
                        pf.file_name,
                        pf.size,
                        f.name,
                        f.b3,
                        f.len
                    );
                    read_exact(c, &f.b3, f.seed, f.len, "published file").await?;
                    v.files += 1;
                }
                FileState::Deleted => {
                    ensure!(active.is_none(), "file {id} ({}) was deleted but is active", f.name);
                    v.deletes += 1;
                }
                // Nothing is in flight now: the delete happened or not for good.
                FileState::DeleteSent => {
                    v.files_uncertain += 1;
                    resolved.push((
                        id,
                        if active.is_some() {
                            FileState::Active
                        } else {
                            FileState::Deleted
                        },
                    ));
                }
            }
        }
    }
    // Deleted files are purged after the trash window; stop tracking them.
    let mut j = journal.lock().unwrap();
    for (id, state) in resolved {
        if let Some(f) = j.files.get_mut(&id) {
            f.state = state;
        }
    }
    j.files.retain(|_, f| f.state != FileState::Deleted);
    drop(j);
    Ok(v)
}

fn check(d: &Daemon) -> anyhow::Result<()> {
    let out = Command::new(&d.bin)
        .args(["admin", "check", "--json"])
        .env("STOWAGE_ADDR", &d.addr)
        .env("STOWAGE_DATA_DIR", d.data_dir())
        .output()?;
    ensure!(
        out.status.success(),
        "admin check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
