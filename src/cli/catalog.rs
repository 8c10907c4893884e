//! Catalog, audit and catalog-admin commands: JSON lines with `--json`,
//! aligned tables otherwise.

use std::future::Future;
use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::{
    AuditCmd, Conn, FileArgs, FilesCmd, Listing, PackageArgs, PackagesCmd, PolicyCmd, PublishArgs, SortArg, StateArg,
    VersionArgs, VersionsCmd,
};
use crate::api::client::{Client, Status};
use crate::api::pb;
use crate::catalog::PackageType;

pub(super) async fn connect(conn: &Conn) -> anyhow::Result<Client> {
    let token = conn.token()?;
    Client::connect_with(&conn.addr, token.as_deref(), &conn.tls())
        .await
        .with_context(|| format!("cannot connect to {}", conn.addr))
}

/// `Code: message`, on one line even when the message has several.
pub(super) fn fail(s: Status) -> anyhow::Error {
    let lines: Vec<&str> = s.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    anyhow::anyhow!("{:?}: {}", s.code(), lines.join(" "))
}

fn package_type(s: &str) -> anyhow::Result<i32> {
    Ok(s.parse::<PackageType>().context("--type")? as i32)
}

impl PackageArgs {
    fn to_pb(&self) -> anyhow::Result<pb::PackageRef> {
        Ok(pb::PackageRef {
            namespace: self.namespace.clone(),
            project: self.project.clone(),
            r#type: package_type(&self.ty)?,
            name: self.name.clone(),
        })
    }
}

impl VersionArgs {
    fn to_pb(&self) -> anyhow::Result<pb::VersionRef> {
        Ok(pb::VersionRef {
            package: Some(self.package.to_pb()?),
            version: self.version.clone(),
        })
    }
}

impl FileArgs {
    fn to_pb(&self) -> anyhow::Result<pb::FileRef> {
        Ok(pb::FileRef {
            version: Some(self.version.to_pb()?),
            file_id: self.file_id,
        })
    }
}

impl StateArg {
    fn to_pb(self) -> i32 {
        let s = match self {
            StateArg::Active => pb::State::Active,
            StateArg::Deleted => pb::State::Deleted,
            StateArg::All => pb::State::All,
        };
        s as i32
    }
}

impl SortArg {
    fn to_pb(self) -> i32 {
        let s = match self {
            SortArg::Name => pb::PackageSort::Name,
            SortArg::Created => pb::PackageSort::Created,
            SortArg::Size => pb::PackageSort::Size,
        };
        s as i32
    }
}

pub(super) fn parse_digests(names: &[String]) -> anyhow::Result<Vec<i32>> {
    let mut want = Vec::new();
    for d in names.iter().filter(|d| !d.is_empty()) {
        want.push(match d.to_ascii_lowercase().as_str() {
            "sha1" => pb::Digest::Sha1,
            "sha512" => pb::Digest::Sha512,
            "md5" => pb::Digest::Md5,
            "sha256" | "blake3" => continue,
            other => bail!("unknown digest {other:?}; choose from sha1, sha512, md5"),
        } as i32);
    }
    Ok(want)
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let PublishArgs {
        conn,
        version,
        file_name,
        digests,
        files,
    } = args;
    if file_name.is_some() && files.len() > 1 {
        bail!("--file-name names a single file, but {} were given", files.len());
    }
    let at = version.to_pb()?;
    let digests = parse_digests(&digests)?;
    let client = connect(&conn).await?;
    for path in files {
        let shown = path.display().to_string();
        let name = match &file_name {
            Some(n) => n.clone(),
            None => path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{shown}: no UTF-8 file name; pass --file-name"))?
                .to_string(),
        };
        let file = tokio::fs::File::open(&path).await.with_context(|| shown.clone())?;
        let meta = file.metadata().await.with_context(|| shown.clone())?;
        if !meta.is_file() {
            bail!("{shown}: not a regular file");
        }
        let header = pb::PublishFileHeader {
            version: Some(at.clone()),
            file_name: name,
            blake3: String::new(),
            upload: Some(pb::PutHeader {
                expected_size: Some(meta.len()),
                digests: digests.clone(),
                ..Default::default()
            }),
        };
        let r = client
            .publish_reader(header, file)
            .await
            .map_err(|s| fail(s).context(shown.clone()))?;
        let mut out = match r.file.as_ref().map(Render::json) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        out.insert("file".into(), shown.into());
        out.insert("package_created".into(), r.package_created.into());
        out.insert("version_created".into(), r.version_created.into());
        out.insert("blob_new".into(), r.blob_new.into());
        out.insert("added_bytes".into(), r.added_bytes.into());
        emit(|w| writeln!(w, "{}", Value::Object(out)))?;
    }
    Ok(())
}

pub async fn packages(cmd: PackagesCmd) -> anyhow::Result<()> {
    match cmd {
        PackagesCmd::List {
            conn,
            namespace,
            project,
            ty,
            name_contains,
            state,
            sort,
            desc,
            listing,
        } => {
            let req = pb::ListPackagesRequest {
                namespace,
                project: project.unwrap_or_default(),
                r#type: ty.as_deref().map(package_type).transpose()?.unwrap_or_default(),
                name_contains: name_contains.unwrap_or_default(),
                state: state.to_pb(),
                sort: sort.to_pb(),
                descending: desc,
                ..Default::default()
            };
            let c = connect(&conn).await?.catalog;
            let items = fetch_all(&listing, |page_size, page_token| {
                let mut c = c.clone();
                let req = pb::ListPackagesRequest {
                    page_size,
                    page_token,
                    ..req.clone()
                };
                async move {
                    let r = c.list_packages(req).await?.into_inner();
                    Ok((r.packages, r.next_page_token))
                }
            })
            .await?;
            print(&items, listing.json)
        }
        PackagesCmd::Show(on) => {
            let req = pb::GetPackageRequest {
                r#ref: Some(on.target.to_pb()?),
            };
            let p = connect(&on.conn).await?.catalog.get_package(req).await.map_err(fail)?;
            print(&[p.into_inner()], on.json)
        }
        PackagesCmd::Delete(on) => {
            let req = on.target.to_pb()?;
            let r = connect(&on.conn)
                .await?
                .catalog
                .delete_package(req)
                .await
                .map_err(fail)?;
            print(&[r.into_inner()], on.json)
        }
        PackagesCmd::Restore(on) => {
            let req = on.target.to_pb()?;
            let r = connect(&on.conn)
                .await?
                .catalog
                .restore_package(req)
                .await
                .map_err(fail)?;
            print(&[r.into_inner()], on.json)
        }
    }
}

pub async fn versions(cmd: VersionsCmd) -> anyhow::Result<()> {
    match cmd {
        VersionsCmd::List {
            conn,
            package,
            state,
            listing,
        } => {
            let package = Some(package.to_pb()?);
            let c = connect(&conn).await?.catalog;
            let items = fetch_all(&listing, |page_size, page_token| {
                let mut c = c.clone();
                let req = pb::ListVersionsRequest {
                    package: package.clone(),
                    state: state.to_pb(),
                    page_size,
                    page_token,
                };
                async move {
                    let r = c.list_versions(req).await?.into_inner();
                    Ok((r.versions, r.next_page_token))
                }
            })
            .await?;
            print(&items, listing.json)
        }
        VersionsCmd::Show(on) => {
            let req = pb::GetVersionRequest {
                r#ref: Some(on.target.to_pb()?),
            };
            let v = connect(&on.conn).await?.catalog.get_version(req).await.map_err(fail)?;
            let v = v.into_inner();
            if on.json {
                let mut out = v.json();
                out["file_list"] = v.file_list.iter().map(Render::json).collect();
                return emit(|w| writeln!(w, "{out}"));
            }
            emit(|w| {
                table(w, pb::Version::HEADER, [v.row()])?;
                writeln!(w)?;
                table(w, pb::PackageFile::HEADER, v.file_list.iter().map(Render::row))
            })
        }
        VersionsCmd::Delete(on) => {
            let req = on.target.to_pb()?;
            let r = connect(&on.conn)
                .await?
                .catalog
                .delete_version(req)
                .await
                .map_err(fail)?;
            print(&[r.into_inner()], on.json)
        }
        VersionsCmd::Restore(on) => {
            let req = on.target.to_pb()?;
            let r = connect(&on.conn)
                .await?
                .catalog
                .restore_version(req)
                .await
                .map_err(fail)?;
            print(&[r.into_inner()], on.json)
        }
    }
}

pub async fn files(cmd: FilesCmd) -> anyhow::Result<()> {
    match cmd {
        FilesCmd::List {
            conn,
            version,
            state,
            listing,
        } => {
            let version = Some(version.to_pb()?);
            let c = connect(&conn).await?.catalog;
            let items = fetch_all(&listing, |page_size, page_token| {
                let mut c = c.clone();
                let req = pb::ListFilesRequest {
                    version: version.clone(),
                    state: state.to_pb(),
                    page_size,
                    page_token,
                };
                async move {
                    let r = c.list_files(req).await?.into_inner();
                    Ok((r.files, r.next_page_token))
                }
            })
            .await?;
            print(&items, listing.json)
        }
        FilesCmd::Delete(on) => {
            let req = on.target.to_pb()?;
            let r = connect(&on.conn).await?.catalog.delete_file(req).await.map_err(fail)?;
            print(&[r.into_inner()], on.json)
        }
        FilesCmd::Restore(on) => {
            let req = on.target.to_pb()?;
            let r = connect(&on.conn).await?.catalog.restore_file(req).await.map_err(fail)?;
            print(&[r.into_inner()], on.json)
        }
        FilesCmd::Download(on) => {
            let req = on.target.to_pb()?;
            let r = connect(&on.conn)
                .await?
                .catalog
                .record_download(req)
                .await
                .map_err(fail)?;
            print(&[r.into_inner()], on.json)
        }
    }
}

pub async fn policy(cmd: PolicyCmd) -> anyhow::Result<()> {
    let (at, p) = match cmd {
        PolicyCmd::Set {
            at,
            allow,
            deny: _,
            exception,
        } => {
            let policy = pb::DuplicatePolicy {
                namespace: at.namespace.clone(),
                r#type: package_type(&at.ty)?,
                allow_duplicates: allow,
                exception_regex: exception.unwrap_or_default(),
            };
            let p = connect(&at.conn).await?.catalog.set_duplicate_policy(policy).await;
            (at, p)
        }
        PolicyCmd::Show { at } => {
            let req = pb::GetDuplicatePolicyRequest {
                namespace: at.namespace.clone(),
                r#type: package_type(&at.ty)?,
            };
            let p = connect(&at.conn).await?.catalog.get_duplicate_policy(req).await;
            (at, p)
        }
    };
    print(&[p.map_err(fail)?.into_inner()], at.json)
}

pub async fn audit(cmd: AuditCmd) -> anyhow::Result<()> {
    let AuditCmd::List {
        conn,
        namespace,
        project,
        name,
        action,
        actor,
        since_ms,
        until_ms,
        listing,
    } = cmd;
    let req = pb::ListEventsRequest {
        namespace: namespace.unwrap_or_default(),
        project: project.unwrap_or_default(),
        name: name.unwrap_or_default(),
        action: action.unwrap_or_default(),
        actor: actor.unwrap_or_default(),
        since_unix_ms: since_ms.unwrap_or_default(),
        until_unix_ms: until_ms.unwrap_or_default(),
        ..Default::default()
    };
    let c = connect(&conn).await?.audit;
    let items = fetch_all(&listing, |page_size, page_token| {
        let mut c = c.clone();
        let req = pb::ListEventsRequest {
            page_size,
            page_token,
            ..req.clone()
        };
        async move {
            let r = c.list_events(req).await?.into_inner();
            Ok((r.events, r.next_page_token))
        }
    })
    .await?;
    print(&items, listing.json)
}

pub async fn check(conn: &Conn, json: bool, read_data: bool) -> anyhow::Result<()> {
    let r = connect(conn)
        .await?
        .admin
        .check(pb::CheckRequest { read_data })
        .await
        .map_err(fail)?;
    let r = r.into_inner();
    print(std::slice::from_ref(&r), json)?;
    if !json {
        emit(|w| r.drift.iter().try_for_each(|d| writeln!(w, "drift: {d}")))?;
        super::check::print_damage(&r, read_data)?;
    }
    super::check::verdict(&r)
}

pub async fn purge(conn: &Conn) -> anyhow::Result<()> {
    let r = connect(conn)
        .await?
        .admin
        .purge(pb::PurgeRequest {})
        .await
        .map_err(fail)?;
    let r = r.into_inner();
    let v = json!({
        "packages": r.packages,
        "versions": r.versions,
        "files": r.files,
        "references_released": r.references_released,
        "blobs_unreferenced": r.blobs_unreferenced,
    });
    emit(|w| writeln!(w, "{v}"))
}

/// Fetches pages until the listing ends or `--limit` items arrived. `page`
/// gets the page size to ask for and the token, and answers the items and
/// the next token (empty at the end).
async fn fetch_all<T, F, Fut>(l: &Listing, mut page: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(u32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Status>>,
{
    const DAEMON_DEFAULT_PAGE: u32 = 100;
    let limit = l.limit.map_or(usize::MAX, |n| n as usize);
    let size = l.page_size.unwrap_or(DAEMON_DEFAULT_PAGE);
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let want = u32::try_from(limit - items.len()).map_or(size, |left| left.min(size));
        let (got, next) = page(want, token.clone()).await.map_err(fail)?;
        items.extend(got);
        if next.is_empty() || items.len() >= limit {
            break;
        }
        if next == token {
            bail!("the daemon answered the same page token twice");
        }
        token = next;
    }
    items.truncate(limit);
    Ok(items)
}

/// How an item prints: a JSON object, or a row under `HEADER`.
trait Render {
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
];

fn print<T: Render>(items: &[T], json: bool) -> anyhow::Result<()> {
    emit(|w| {
        if json {
            items.iter().try_for_each(|i| writeln!(w, "{}", i.json()))
        } else {
            table(w, T::HEADER, items.iter().map(Render::row))
        }
    })
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

fn time(ms: i64) -> String {
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
        "BYTES",
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
            self.bytes.to_string(),
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
