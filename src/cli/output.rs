//! Terminal output of the CLI: results as aligned tables or JSON lines
//! ([`Render`], [`print`], [`table`]), summaries as aligned `label  value`
//! lines ([`fields`]), the cells they are made of (times, sizes, counts with
//! sizes, CSV fields, `-` for nothing), and [`emit`], the stdout writer for
//! which a reader that went away is not an error.
//!
//! By default a command prints for people (tables, readable sizes); with
//! `--json` it prints the machine form (one JSON object per line, raw
//! numbers).

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::api::pb;
use crate::catalog::PackageType;

/// How an item prints: a JSON object, or a row under `HEADER`.
pub(super) trait Render {
    const HEADER: &'static [&'static str];
    fn json(&self) -> Value;
    fn row(&self) -> Vec<String>;
}

/// Columns aligned right.
const NUMERIC: &[&str] = &[
    "ID",
    "VERSIONS",
    "FILES",
    "SIZE",
    "DOWNLOADS",
    "BYTES",
    "PACKAGES",
    "REFERENCES",
    "BLOBS",
    "DRIFT",
    "LOGICAL",
    "UNIQUE",
    "PHYSICAL",
    "EXCLUSIVE",
    "SHARED",
    "TRASH",
    "DEDUP",
    "COUNT",
    "VALUE",
    "SHARE",
    "STORED",
];

pub(super) fn print<T: Render>(items: &[T], json: bool) -> anyhow::Result<()> {
    emit(|w| {
        if json {
            items.iter().try_for_each(|i| writeln!(w, "{}", i.json()))
        } else {
            table(w, T::HEADER, items.iter().map(Render::row))
        }
    })
}

/// As [`print`], but an empty listing prints `empty` (a sentence saying
/// what holds nothing) instead of a lone header; with `json`, nothing.
pub(super) fn print_or<T: Render>(items: &[T], json: bool, empty: &str) -> anyhow::Result<()> {
    match (items.is_empty(), json) {
        (true, false) => emit(|w| writeln!(w, "{empty}")),
        _ => print(items, json),
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub(super) fn emit(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

pub(super) fn table(w: &mut dyn Write, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> io::Result<()> {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for ((cell, &width), name) in row.iter().zip(&widths).zip(header) {
            if NUMERIC.contains(name) {
                line += &format!("{cell:>width$}  ");
            } else {
                line += &format!("{cell:<width$}  ");
            }
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A summary for people: one `label  value` line per field, values aligned.
pub(super) fn fields(w: &mut dyn Write, rows: &[(&str, String)]) -> io::Result<()> {
    let width = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    for (label, value) in rows {
        writeln!(w, "{label:<width$}  {value}")?;
    }
    Ok(())
}

/// `n` things and their size: `3 (1.2 MiB)`.
pub(super) fn count_size(n: u64, bytes: u64) -> String {
    format!("{n} ({})", size(bytes))
}

/// A Unix time in ms as RFC 3339 (UTC), `-` for none.
pub(super) fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        _ => "-".into(),
    }
}

pub(super) fn size(n: u64) -> String {
    bytesize::ByteSize(n).to_string()
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
pub(super) fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

fn type_name(t: i32) -> Option<&'static str> {
    let t = PackageType::from_u8(u8::try_from(t).ok()?).ok()?;
    Some(t.as_str())
}

fn package_fields(r: Option<&pb::PackageRef>, out: &mut Map<String, Value>) {
    let r = r.cloned().unwrap_or_default();
    out.insert("namespace".into(), r.namespace.into());
    out.insert("project".into(), r.project.into());
    out.insert("type".into(), type_name(r.r#type).into());
    out.insert("name".into(), r.name.into());
}

impl Render for pb::Package {
    const HEADER: &'static [&'static str] = &[
        "PROJECT", "TYPE", "NAME", "LATEST", "VERSIONS", "FILES", "SIZE", "CREATED", "DELETED",
    ];

    fn json(&self) -> Value {
        let mut out = Map::new();
        package_fields(self.r#ref.as_ref(), &mut out);
        out.insert("created_unix_ms".into(), self.created_unix_ms.into());
        out.insert("deleted_unix_ms".into(), self.deleted_unix_ms.into());
        out.insert("versions".into(), self.versions.into());
        out.insert("files".into(), self.files.into());
        out.insert("size_bytes".into(), self.size_bytes.into());
        out.insert("latest_version".into(), self.latest_version.clone().into());
        Value::Object(out)
    }

    fn row(&self) -> Vec<String> {
        let r = self.r#ref.clone().unwrap_or_default();
        vec![
            r.project,
            type_name(r.r#type).unwrap_or("-").into(),
            r.name,
            or_dash(&self.latest_version),
            self.versions.to_string(),
            self.files.to_string(),
            size(self.size_bytes),
            time(self.created_unix_ms),
            self.deleted_unix_ms.map_or("-".into(), time),
        ]
    }
}

impl Render for pb::Version {
    const HEADER: &'static [&'static str] = &["VERSION", "FILES", "SIZE", "CREATED", "DELETED"];

    fn json(&self) -> Value {
        let r = self.r#ref.clone().unwrap_or_default();
        let mut out = Map::new();
        package_fields(r.package.as_ref(), &mut out);
        out.insert("version".into(), r.version.into());
        out.insert("created_unix_ms".into(), self.created_unix_ms.into());
        out.insert("deleted_unix_ms".into(), self.deleted_unix_ms.into());
        out.insert("files".into(), self.files.into());
        out.insert("size_bytes".into(), self.size_bytes.into());
        Value::Object(out)
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.r#ref.as_ref().map(|r| r.version.clone()).unwrap_or_default(),
            self.files.to_string(),
            size(self.size_bytes),
            time(self.created_unix_ms),
            self.deleted_unix_ms.map_or("-".into(), time),
        ]
    }
}

impl Render for pb::PackageFile {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "NAME",
        "SIZE",
        "DOWNLOADS",
        "LAST_DOWNLOAD",
        "CREATED",
        "DELETED",
        "BLAKE3",
    ];

    fn json(&self) -> Value {
        let mut out = Map::new();
        out.insert("file_id".into(), self.file_id.into());
        out.insert("file_name".into(), self.file_name.clone().into());
        out.insert("size".into(), self.size.into());
        let d = self.digests.clone().unwrap_or_default();
        out.insert("blake3".into(), d.blake3.into());
        out.insert("sha256".into(), d.sha256.into());
        for (k, v) in [("sha1", d.sha1), ("sha512", d.sha512), ("md5", d.md5)] {
            if let Some(v) = v {
                out.insert(k.into(), v.into());
            }
        }
        out.insert("created_unix_ms".into(), self.created_unix_ms.into());
        out.insert("deleted_unix_ms".into(), self.deleted_unix_ms.into());
        out.insert("last_download_unix_ms".into(), self.last_download_unix_ms.into());
        out.insert("download_count".into(), self.download_count.into());
        Value::Object(out)
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.file_id.to_string(),
            self.file_name.clone(),
            size(self.size),
            self.download_count.to_string(),
            time(self.last_download_unix_ms),
            time(self.created_unix_ms),
            self.deleted_unix_ms.map_or("-".into(), time),
            self.digests.as_ref().map(|d| d.blake3.clone()).unwrap_or_default(),
        ]
    }
}

impl Render for pb::AuditEvent {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "TIME",
        "ACTOR",
        "ACTION",
        "TARGET",
        "NAMESPACE",
        "PROJECT",
        "TYPE",
        "NAME",
        "VERSION",
        "FILE",
        "SIZE",
    ];

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "unix_ms": self.unix_ms,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "namespace": self.namespace,
            "project": self.project,
            "type": type_name(self.r#type),
            "name": self.name,
            "version": self.version,
            "file_name": self.file_name,
            "file_id": self.file_id,
            "bytes": self.bytes,
        })
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            time(self.unix_ms),
            or_dash(&self.actor),
            or_dash(&self.action),
            or_dash(&self.target),
            or_dash(&self.namespace),
            or_dash(&self.project),
            type_name(self.r#type).unwrap_or("-").into(),
            or_dash(&self.name),
            or_dash(&self.version),
            or_dash(&self.file_name),
            size(self.bytes),
        ]
    }
}

impl Render for pb::DuplicatePolicy {
    const HEADER: &'static [&'static str] = &["NAMESPACE", "TYPE", "DUPLICATES", "EXCEPTION"];

    fn json(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "type": type_name(self.r#type),
            "allow_duplicates": self.allow_duplicates,
            "exception_regex": self.exception_regex,
        })
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.namespace.clone(),
            type_name(self.r#type).unwrap_or("-").into(),
            if self.allow_duplicates { "allowed" } else { "denied" }.into(),
            or_dash(&self.exception_regex),
        ]
    }
}

impl Render for pb::CheckResponse {
    const HEADER: &'static [&'static str] = &["PACKAGES", "VERSIONS", "FILES", "REFERENCES", "BLOBS", "DRIFT"];

    fn json(&self) -> Value {
        json!({
            "packages": self.packages,
            "versions": self.versions,
            "files": self.files,
            "references": self.references,
            "blobs": self.blobs,
            "drift": self.drift,
            "quarantined_packs": self.quarantined_packs,
            "damage": super::check::damage_json(&self.damage),
            "packs_verified": self.packs_verified,
            "records_verified": self.records_verified,
            "bytes_verified": self.bytes_verified,
        })
    }

    fn row(&self) -> Vec<String> {
        [self.packages, self.versions, self.files, self.references, self.blobs]
            .iter()
            .map(u64::to_string)
            .chain([self.drift.len().to_string()])
            .collect()
    }
}
