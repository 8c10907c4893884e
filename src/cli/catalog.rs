//! Catalog, audit and catalog-admin commands: JSON lines with `--json`,
//! aligned tables otherwise (both made by [`super::output`]).

use std::future::Future;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use super::output::{Render, emit, print, print_or, table};
use super::{
    AuditCmd, Conn, DownloadArgs, FileArgs, FilesCmd, Listing, PackageArgs, PackagesCmd, PolicyCmd, PublishArgs,
    SortArg, StateArg, VersionArgs, VersionsCmd, connect, fail,
};
use crate::api::client::Status;
use crate::api::pb;
use crate::catalog::PackageType;

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
            let filtered = project.is_some() || ty.is_some() || name_contains.is_some();
            let req = pb::ListPackagesRequest {
                namespace: namespace.clone(),
                project: project.unwrap_or_default(),
                r#type: ty.as_deref().map(package_type).transpose()?.unwrap_or_default(),
                name_contains: name_contains.unwrap_or_default(),
                state: state.to_pb(),
                sort: sort.to_pb(),
                descending: desc,
                ..Default::default()
            };
            let client = connect(&conn).await?;
            let c = client.catalog.clone();
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
            if items.is_empty() && !listing.json {
                let said = super::namespaces::empty_listing(&client, &namespace, filtered).await;
                return print_or(&items, false, &said);
            }
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
        FilesCmd::Download(d) => download(d).await,
    }
}

/// Writes a file's bytes to `-o FILE` (whole, or not at all) or stdout,
/// then counts the download: a failed one is not counted.
async fn download(d: DownloadArgs) -> anyhow::Result<()> {
    let at = d.target.to_pb()?;
    let client = connect(&d.conn).await?;
    let v = client
        .catalog
        .clone()
        .get_version(pb::GetVersionRequest {
            r#ref: at.version.clone(),
        })
        .await
        .map_err(fail)?
        .into_inner();
    let Some(file) = v.file_list.iter().find(|f| f.file_id == at.file_id) else {
        bail!("version {} has no file {}", d.target.version.version, at.file_id);
    };
    if file.deleted_unix_ms.is_some() {
        bail!(
            "file {} ({}) is in the trash: `stowage files restore` it first",
            at.file_id,
            file.file_name
        );
    }
    let req = pb::GetRequest {
        namespace: d.target.version.package.namespace.clone(),
        blake3: file.digests.as_ref().map(|x| x.blake3.clone()).unwrap_or_default(),
        offset: 0,
        length: None,
    };
    super::client::get_to(&client, req, d.output.as_deref()).await?;
    client.catalog.clone().record_download(at).await.map_err(fail)?;
    Ok(())
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
        since,
        until,
        listing,
    } = cmd;
    let req = pb::ListEventsRequest {
        namespace: namespace.unwrap_or_default(),
        project: project.unwrap_or_default(),
        name: name.unwrap_or_default(),
        action: action.unwrap_or_default(),
        actor: actor.unwrap_or_default(),
        since_unix_ms: since.unwrap_or_default(),
        until_unix_ms: until.unwrap_or_default(),
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
    print_or(&items, listing.json, "no audit events match")
}

/// A point in time as Unix ms: an age before now (`90s`, `1h`, `7d`), an
/// RFC 3339 time, or Unix ms.
pub(super) fn time_arg(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{s} is before 1970"))?;
        return i64::try_from(ms.as_millis()).map_err(|_| format!("{s} is too far away"));
    }
    match humantime::parse_duration(s) {
        Ok(age) => {
            let age = i64::try_from(age.as_millis()).map_err(|_| format!("{s} is too long ago"))?;
            Ok(crate::now_ms().saturating_sub(age).max(1))
        }
        Err(_) => Err(format!(
            "{s:?} is not a time: give an age (90s, 1h, 7d), an RFC 3339 time (2026-05-01T00:00:00Z) or Unix ms"
        )),
    }
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
