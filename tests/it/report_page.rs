//! The report an operator looks at: `stowage report` in JSON and HTML,
//! store-wide and scoped, through the daemon and the CLI; the HTML page
//! rendered by headless Chromium and its screenshot decoded and checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage::api::client::{Client, version_ref};
use stowage::api::pb::{self, PackageType as T};

use crate::harness::{Daemon, random_bytes};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn publish(c: &Client, ns: &str, project: &str, ty: T, name: &str, ver: &str, data: Bytes) -> u64 {
    let file = format!("{}-{ver}.bin", name.replace([':', '@', '/'], "_"));
    let r = c
        .publish_bytes(version_ref(ns, project, ty, name, ver), &file, data)
        .await
        .unwrap();
    r.file.unwrap().file_id
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn html(d: &Daemon, args: &[&str]) -> String {
    let path = d.dir.path().join("page.html");
    let out = d.cli(&[&["report", "--format", "html", "-o", path.to_str().unwrap()], args].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "-o writes nothing to stdout");
    std::fs::read_to_string(path).unwrap()
}

/// Four namespaces' worth of packages over `days` days, a report each day
/// (which takes the day's snapshot). acme/web's @acme/ui is downloaded.
async fn sample(d: &Daemon, days: u64) {
    let c = d.client().await;
    for day in 0..days {
        if day > 0 {
            d.advance_clock(DAY);
        }
        let v = format!("1.{day}.0");
        let ui = publish(
            &c,
            "acme",
            "web",
            T::Npm,
            "@acme/ui",
            &v,
            random_bytes(day % 3, 200_000 + day as usize * 30_000),
        )
        .await;
        if day == 0 {
            let f = pb::FileRef {
                version: Some(version_ref("acme", "web", T::Npm, "@acme/ui", &v)),
                file_id: ui,
            };
            c.catalog.clone().record_download(f).await.unwrap();
        }
        publish(
            &c,
            "acme",
            "api",
            T::Maven,
            "com.acme:core",
            &v,
            random_bytes(100 + day, 300_000),
        )
        .await;
        publish(
            &c,
            "beta",
            "lib",
            T::Pypi,
            "requests-lite",
            &v,
            random_bytes(200 + day, 120_000),
        )
        .await;
        if day % 2 == 0 {
            publish(
                &c,
                "gamma",
                "img",
                T::Generic,
                "base-image",
                &v,
                random_bytes(300 + day, 500_000),
            )
            .await;
        }
        json(&d.cli(&["report", "--format", "json"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_html_reports_are_dated_scoped_and_show_runs() {
    let mut d = Daemon::start("[gc]\ninterval = \"1h\"\n").await;
    sample(&d, 4).await;
    let gc = d.cli(&["gc"]);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    let now = stowage::now_ms();
    // The CLI's clock is the daemon's only through the offset file.
    let offset: i64 = std::fs::read_to_string(d.dir.path().join("clock-offset-ms"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let now = now + offset;

    // JSON: provenance, trends and the background runs.
    let r = json(&d.cli(&["report", "--format", "json"]));
    assert!((r["generated_ms"].as_i64().unwrap() - now).abs() < 60_000, "{r}");
    assert_eq!(r["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["daemon"]["data_dir"], d.data_dir().display().to_string());
    let days: Vec<u64> = r["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_u64().unwrap())
        .collect();
    assert_eq!(days.len(), 4, "{r}");
    assert_eq!(days[3] - days[0], 3);
    assert_eq!(r["growth_30d"]["since_day"], days[0]);
    assert!(r["growth_30d"]["file_bytes"].as_i64().unwrap() > 0);
    assert!(!r["fastest_growing"].as_array().unwrap().is_empty());
    assert_eq!(r["gc"]["runs"], 1, "{r}");
    assert_eq!(r["gc"]["interval_ms"], 3_600_000);
    assert!(r["gc"]["last_run_ms"].as_i64().unwrap() <= now + 1000);
    assert!(r["gc"]["next_run_ms"].as_i64().is_some(), "{r}");
    assert_eq!(r["sweep"]["interval_ms"], 24 * 3_600_000);
    assert!(r["sweep"]["next_run_ms"].as_i64().is_some(), "{r}");
    // A namespace's report does not tell a tenant where the data dir is.
    let ns = json(&d.cli(&["report", "--format", "json", "-n", "acme"]));
    assert_eq!(ns["daemon"]["data_dir"], "");
    assert_eq!(ns["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    // A project's trends are its packages' file bytes.
    let pr = json(&d.cli(&["report", "--format", "json", "-n", "acme", "-p", "web"]));
    let web: Vec<u64> = pr["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["file_bytes"].as_u64().unwrap())
        .collect();
    let expect: Vec<u64> = (0..4u64)
        .map(|day| (0..=day).map(|k| 200_000 + k * 30_000).sum())
        .collect();
    assert_eq!(web, expect, "{pr}");
    assert_eq!(pr["by"], "package", "a project's report groups by package by default");

    // HTML, store-wide: dated, with runs, a namespace table with shares, a treemap.
    let page = html(&d, &[]);
    let day = |n: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(n * 86_400)).to_string()[..10]
            .to_string()
    };
    assert!(
        page.contains(&format!("by stowage {}", env!("CARGO_PKG_VERSION"))),
        "{page}"
    );
    assert!(page.contains("Generated ") && page.contains(&day(days[3])));
    assert!(page.contains(&format!(">{}</text>", day(days[0]))), "dated axis");
    assert!(
        page.contains(&format!("over the last 3 days (since {}", day(days[0]))),
        "growth over the days with data only"
    );
    assert!(!page.contains("30 days: files"), "no claim over 30 days of data");
    assert!(page.contains("% of stored") && page.contains("<td>acme</td>"));
    let stored: Vec<u64> = ["acme", "beta", "gamma"]
        .iter()
        .map(|n| ns_group(&r, n)["physical_bytes"].as_u64().unwrap())
        .collect();
    let share = format!("{:.1}%", stored[0] as f64 * 100.0 / stored.iter().sum::<u64>() as f64);
    assert!(page.contains(&share), "acme's share {share}");
    for pkg in [
        "<title>acme/web/npm:@acme/ui",
        "<title>beta/lib/pypi:requests-lite",
        "<title>gamma",
    ] {
        assert!(page.contains(pkg), "treemap lacks {pkg}");
    }
    assert!(page.contains("garbage collection") && page.contains("every 1h"));
    assert!(page.contains("<td>no run yet</td>"), "no sweep ran yet");
    // Every byte on disk in a bucket, their sum beside the data dir's size.
    assert!(page.contains("Where every byte on disk is"), "{page}");
    let cell = |bucket: &str| {
        let at = page
            .find(&format!("{bucket}</td><td>"))
            .unwrap_or_else(|| panic!("no {bucket} row"));
        let rest = &page[at + bucket.len() + 9..];
        rest[..rest.find("</td>").unwrap()].to_string()
    };
    assert_ne!(cell("active files"), "0 B");
    assert_eq!(cell("total of the buckets"), cell("data dir, measured"));
    assert!(page.contains("No retention policy covers this scope."));
    for external in ["src=", "href=", "url(", "<script", "@import"] {
        assert!(!page.contains(external), "the page refers outside itself: {external}");
    }

    // HTML of one project: its figures in every card and chart.
    let page = html(&d, &["-n", "acme", "-p", "web"]);
    let g = &pr["groups"];
    let web_logical: u64 = g
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["logical_bytes"].as_u64().unwrap())
        .sum();
    let human = |n: u64| bytesize::ByteSize(n).to_string();
    assert!(
        page.contains(&format!("<b>{}</b>", human(web_logical))),
        "the Files card is the project's"
    );
    let store_files = r["summary"]["artifacts_bytes"].as_u64().unwrap();
    assert!(
        !page.contains(&format!("<b>{}</b>", human(store_files))),
        "no store-wide card"
    );
    assert!(page.contains("By package: stored bytes"));
    assert!(
        !page.contains("Where every byte on disk is"),
        "the buckets are store-wide"
    );
    assert!(page.contains("Package types are counted per namespace"));
    assert!(page.contains("<title>acme/web/npm:@acme/ui"));
    assert!(
        !page.contains("<title>acme/api") && !page.contains("<title>beta"),
        "the treemap is the project's"
    );
    assert!(page.contains("project acme/web"), "the savings chart names the scope");

    // An empty namespace says so instead of drawing empty tables.
    let page = html(&d, &["-n", "nobody"]);
    assert!(
        page.contains("No projects in namespace nobody hold anything yet."),
        "{page}"
    );
    assert!(page.contains("No packages in namespace nobody yet."));
    assert!(page.contains("Nothing stored yet."));
    assert!(page.contains("No package of any type yet."));

    // The last run's time outlives a restart; the run count is since the start.
    d.restart().await;
    let after = json(&d.cli(&["report", "--format", "json"]));
    assert_eq!(after["gc"]["last_run_ms"], r["gc"]["last_run_ms"], "{after}");
    assert_eq!(after["gc"]["last_elapsed_ms"], r["gc"]["last_elapsed_ms"]);
    assert_eq!(after["gc"]["runs"], 0);
}

fn ns_group<'a>(r: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_says_what_could_be_freed() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    // old: downloaded once, then 100 days pass; never: never downloaded;
    // fresh: downloaded today.
    let old = publish(&c, "acme", "web", T::Npm, "old", "1", random_bytes(1, 100_000)).await;
    let dl = |name: &str, id: u64| {
        let f = pb::FileRef {
            version: Some(version_ref("acme", "web", T::Npm, name, "1")),
            file_id: id,
        };
        let mut cat = c.catalog.clone();
        async move { cat.record_download(f).await.unwrap() }
    };
    dl("old", old).await;
    d.advance_clock(100 * DAY);
    publish(&c, "acme", "web", T::Npm, "never", "1", random_bytes(2, 150_000)).await;
    let fresh = publish(&c, "acme", "web", T::Npm, "fresh", "1", random_bytes(3, 50_000)).await;
    dl("fresh", fresh).await;
    publish(&c, "acme", "api", T::Npm, "svc", "1", random_bytes(4, 70_000)).await;
    for v in ["2", "3"] {
        publish(
            &c,
            "acme",
            "web",
            T::Npm,
            "fresh",
            v,
            random_bytes(10 + v.parse::<u64>().unwrap(), 60_000),
        )
        .await;
    }
    // A namespace-wide policy keeping one version of each package.
    let policy = d.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "name = \"keep-one\"\nnamespace = \"acme\"\nversions = { keep_latest = 1 }\n",
    )
    .unwrap();
    let out = d.cli(&["retention", "set", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = plan_summary(&c, "keep-one").await;
    assert_eq!(plan.versions, 2);

    let r = json(&d.cli(&["report", "--format", "json"]));
    let f = &r["freeable"];
    assert_eq!(f["idle_days"], 90);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["largest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["package"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&f["never_downloaded"]),
        ["acme/web/npm:never", "acme/api/npm:svc"],
        "{f}"
    );
    assert_eq!(f["never_downloaded"]["logical_bytes"], 220_000);
    assert_eq!(names(&f["not_downloaded"]), ["acme/web/npm:old"]);
    assert_eq!(f["not_downloaded"]["logical_bytes"], 100_000);
    assert!(f["not_downloaded"]["largest"][0]["last_download_ms"].as_i64().unwrap() > 0);
    // Random data shares no chunk: each package's exclusive bytes are all it stores.
    assert!(f["never_downloaded"]["exclusive_bytes"].as_u64().unwrap() > 200_000);
    let p = &f["policies"][0];
    assert_eq!(p["policy"], "keep-one");
    assert_eq!(p["versions"], plan.versions);
    assert_eq!(p["files"], plan.files);
    assert_eq!(p["logical_bytes"], plan.logical_bytes);
    assert_eq!(p["physical_bytes"], plan.physical_bytes, "what the plan promises");

    // One project: only its packages, and the namespace's policy narrowed to it.
    let r = json(&d.cli(&["report", "--format", "json", "-n", "acme", "-p", "api"]));
    let f = &r["freeable"];
    assert_eq!(names(&f["never_downloaded"]), ["acme/api/npm:svc"]);
    assert!(names(&f["not_downloaded"]).is_empty());
    assert_eq!(f["policies"][0]["versions"], 0, "api has one version of each package");
    let page = html(&d, &["-n", "acme", "-p", "web"]);
    assert!(
        page.contains("What could be freed") && page.contains("keep-one"),
        "{page}"
    );
    assert!(page.contains("<td>acme/web/npm:never</td>") && page.contains("<td>acme/web/npm:old</td>"));
    assert!(!page.contains("acme/api/npm:svc"));

    // A sweep shows as the last run; afterwards the policy has nothing left to free.
    let out = d.cli(&["retention", "sweep", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&d.cli(&["report", "--format", "json"]));
    assert_eq!(r["sweep"]["runs"], 1, "{}", r["sweep"]);
    assert!(r["sweep"]["last_run_ms"].as_i64().is_some());
    assert_eq!(r["freeable"]["policies"][0]["versions"], 0);
    let page = html(&d, &[]);
    assert_eq!(
        page.matches("<td>no run yet</td>").count(),
        1,
        "GC has not run, the sweep has"
    );
}

async fn plan_summary(c: &Client, policy: &str) -> pb::PlanSummary {
    let mut s = c
        .retention
        .clone()
        .plan(pb::PlanRequest {
            policy: policy.into(),
            namespace: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(m) = s.message().await.unwrap() {
        last = m.summary.or(last);
    }
    last.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_file_works_for_every_format() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    publish(&c, "acme", "web", T::Npm, "ui", "1", random_bytes(1, 80_000)).await;
    for format in ["table", "json", "csv", "html"] {
        let path = d.dir.path().join(format!("report.{format}"));
        std::fs::write(&path, "stale").unwrap();
        let out = d.cli(&["report", "--format", format, "-o", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{format} printed to stdout instead");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("acme") && !text.starts_with("stale"), "{format}: {text}");
    }
    let csv = std::fs::read_to_string(d.dir.path().join("report.csv")).unwrap();
    assert!(csv.starts_with("key,packages,") && csv.lines().nth(1).unwrap().starts_with("acme,1,"));
    let out = d.cli(&["report", "--format", "csv"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        csv,
        "the file holds what stdout would"
    );
    // A file that cannot be written is an error that names it.
    let out = d.cli(&["report", "--format", "csv", "-o", "/nonexistent/dir/r.csv"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/r.csv"));
}

// ---- headless Chromium ----

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 3000;
/// The charts' series colours and the treemap's namespace colours (cli::html).
const SERIES: [[u8; 3]; 3] = [[0x2b, 0x6c, 0xb0], [0xdd, 0x6b, 0x20], [0x38, 0xa1, 0x69]];
const TREE: [[u8; 3]; 3] = [[0x4c, 0x51, 0xbf], [0xc0, 0x56, 0x21], [0x2f, 0x85, 0x5a]];

fn chromium() -> PathBuf {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    bin.expect("chromium is missing: tools/setup.sh --test (run by .ci/run) installs Debian's chromium")
}

/// Screenshot of `page` by headless Chromium, decoded: (width, height, RGB rows).
fn screenshot(page: &Path, png: &Path) -> (u32, u32, Vec<u8>) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took over 120 s to take the screenshot");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium exited with {status}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3 && info.bit_depth == png::BitDepth::Eight, "{info:?}");
    let rgb: Vec<u8> = buf[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

/// Pixels of colour `c` (within a small tolerance) and their bounding box.
fn find(rgb: &[u8], width: u32, c: [u8; 3]) -> (usize, Option<(u32, u32, u32, u32)>) {
    let mut n = 0;
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    for (i, p) in rgb.chunks(3).enumerate() {
        if p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 6) {
            n += 1;
            let (x, y) = (i as u32 % width, i as u32 / width);
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    (n, bbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_screenshots_render_in_chromium() {
    let d = Daemon::start("").await;
    sample(&d, 6).await;
    let out_dir = std::env::var_os("STOWAGE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| d.dir.path().to_path_buf());
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut shots = Vec::new();
    for (name, args) in [("store", vec![]), ("acme-web", vec!["-n", "acme", "-p", "web"])] {
        let page = out_dir.join(format!("report-{name}.html"));
        std::fs::write(&page, html(&d, &args)).unwrap();
        let (w, h, rgb) = screenshot(&page, &out_dir.join(format!("report-{name}.png")));
        assert_eq!((w, h), (WIDTH, HEIGHT), "{name}: the window's size");
        let ink = rgb.chunks(3).filter(|p| p.iter().any(|&v| v < 200)).count();
        let share = ink as f64 / (w * h) as f64;
        assert!(share > 0.05, "{name}: only {:.1}% of the page is drawn", share * 100.0);
        shots.push((name, w, rgb));
    }
    for (name, w, rgb) in &shots {
        // Every series colour is drawn: the line chart, the savings and breakdown bars.
        for c in SERIES {
            let (n, _) = find(rgb, *w, c);
            assert!(n > 300, "{name}: {c:02x?} drawn on {n} pixels only");
        }
        // The treemap: a block of acme's colour, wide and tall.
        let (n, bbox) = find(rgb, *w, TREE[0]);
        let (x0, y0, x1, y1) = bbox.unwrap_or_else(|| panic!("{name}: no treemap"));
        assert!(
            n > 40_000 && x1 - x0 > 300 && y1 - y0 > 150,
            "{name}: treemap {n} px in {bbox:?}"
        );
    }
    // Store-wide, gamma and beta have their own colours; acme/web's report has acme's only.
    let (_, store, rgb) = &shots[0];
    assert!(find(rgb, *store, TREE[1]).0 > 5_000 && find(rgb, *store, TREE[2]).0 > 1_000);
    let (_, web, rgb) = &shots[1];
    assert_eq!(
        find(rgb, *web, TREE[1]).0 + find(rgb, *web, TREE[2]).0,
        0,
        "other namespaces in acme/web's treemap"
    );
}
