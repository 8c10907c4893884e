//! `CatalogService` and `AuditService` over the engine and `catalog::read`.

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::pb::{self, audit_service_server::AuditService, catalog_service_server::CatalogService};
use super::{MAX_FILTER, allow, allow_everywhere, allow_scope, bounded, parse_hash, put_answer, recv, split, status};
use crate::auth::Scope;
use crate::catalog::read::{self, EventFilter, PackageFilter};
use crate::catalog::{
    CatalogOp, CatalogOutcome, DupPolicy, EventRec, FileRef, FileView, PackageSort, PackageType, PackageView, PkgRef,
    State, Target, VerRef, VersionView,
};
use crate::engine::Engine;
use crate::error::Error;
use crate::hash::Hash;

pub struct CatalogApi {
    pub engine: Arc<Engine>,
}

pub struct AuditApi {
    pub engine: Arc<Engine>,
}

pub(super) fn package_type(t: i32) -> Result<PackageType, Status> {
    match t {
        0 => Err(Status::invalid_argument("package type is required")),
        t => u8::try_from(t)
            .ok()
            .and_then(|b| PackageType::from_u8(b).ok())
            .ok_or_else(|| Status::invalid_argument(format!("unknown package type {t}"))),
    }
}

pub(super) fn optional_type(t: i32) -> Result<Option<PackageType>, Status> {
    match t {
        0 => Ok(None),
        t => package_type(t).map(Some),
    }
}

pub(super) fn pkg_ref(p: Option<pb::PackageRef>) -> Result<PkgRef, Status> {
    let p = p.ok_or_else(|| Status::invalid_argument("package is required"))?;
    Ok(PkgRef {
        namespace: p.namespace,
        project: p.project,
        ty: package_type(p.r#type)?,
        name: p.name,
    })
}

pub(super) fn ver_ref(v: Option<pb::VersionRef>) -> Result<VerRef, Status> {
    let v = v.ok_or_else(|| Status::invalid_argument("version is required"))?;
    Ok(VerRef {
        pkg: pkg_ref(v.package)?,
        version: v.version,
    })
}

pub(super) fn file_ref(f: pb::FileRef) -> Result<FileRef, Status> {
    Ok(FileRef {
        ver: ver_ref(f.version)?,
        file_id: f.file_id,
    })
}

pub(super) fn state(s: i32) -> Result<State, Status> {
    match pb::State::try_from(s) {
        Ok(pb::State::Active) => Ok(State::Active),
        Ok(pb::State::Deleted) => Ok(State::Deleted),
        Ok(pb::State::All) => Ok(State::All),
        Err(_) => Err(Status::invalid_argument(format!("unknown state {s}"))),
    }
}

fn pb_pkg_ref(p: &PkgRef) -> pb::PackageRef {
    pb::PackageRef {
        namespace: p.namespace.clone(),
        project: p.project.clone(),
        r#type: p.ty as i32,
        name: p.name.clone(),
    }
}

fn pb_ver_ref(v: &VerRef) -> pb::VersionRef {
    pb::VersionRef {
        package: Some(pb_pkg_ref(&v.pkg)),
        version: v.version.clone(),
    }
}

fn pb_package(v: PackageView) -> pb::Package {
    pb::Package {
        r#ref: Some(pb_pkg_ref(&v.pkg)),
        created_unix_ms: v.rec.created_ms,
        deleted_unix_ms: v.rec.deleted_ms,
        versions: v.rec.versions,
        files: v.rec.files,
        size_bytes: v.rec.size,
        latest_version: v.latest_version,
    }
}

fn pb_version(v: VersionView) -> pb::Version {
    pb::Version {
        r#ref: Some(pb_ver_ref(&v.ver)),
        created_unix_ms: v.rec.created_ms,
        deleted_unix_ms: v.rec.deleted_ms,
        files: v.rec.files,
        size_bytes: v.rec.size,
        file_list: v.files.into_iter().map(pb_file).collect(),
    }
}

fn pb_file(f: FileView) -> pb::PackageFile {
    let r = f.rec;
    pb::PackageFile {
        file_id: f.id,
        file_name: r.name,
        size: r.size,
        digests: Some(pb::Digests {
            blake3: Hash(r.blake3).to_hex(),
            sha256: hex::encode(r.sha256),
            sha1: r.sha1.map(hex::encode),
            sha512: r.sha512.map(hex::encode),
            md5: r.md5.map(hex::encode),
        }),
        created_unix_ms: r.created_ms,
        deleted_unix_ms: r.deleted_ms,
        last_download_unix_ms: r.last_download_ms,
        download_count: r.downloads,
    }
}

fn pb_event(id: u64, e: EventRec) -> pb::AuditEvent {
    pb::AuditEvent {
        id,
        unix_ms: e.unix_ms,
        actor: e.actor,
        action: e.action,
        target: e.target,
        namespace: e.namespace,
        project: e.project,
        r#type: e.ty.map_or(0, |t| t as i32),
        name: e.name,
        version: e.version,
        file_name: e.file_name,
        file_id: e.file_id,
        bytes: e.bytes,
    }
}

/// Runs a blocking index read off the async threads.
async fn blocking_read<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> crate::Result<T> + Send + 'static,
) -> Result<T, Status> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)
}

impl CatalogApi {
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        blocking_read(&self.engine, f).await
    }

    async fn change(&self, op: CatalogOp) -> Result<CatalogOutcome, Status> {
        self.engine.catalog(op).await.map_err(status)
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn publish_file(
        &self,
        req: Request<Streaming<pb::PublishFileRequest>>,
    ) -> Result<Response<pb::PublishFileResponse>, Status> {
        // Only a caller that may write somewhere takes an upload slot.
        let uploader = allow_scope(&req, Scope::Write)?;
        let _slot = self.engine.upload_slot(&uploader.id).map_err(status)?;
        let (req_ext, mut stream) = split(req);
        let header = match recv(&mut stream, self.engine.config().upload_idle_timeout).await? {
            Some(pb::PublishFileRequest {
                msg: Some(pb::publish_file_request::Msg::Header(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a PublishFileHeader",
                ));
            }
        };
        let at = ver_ref(header.version)?;
        let caller = allow(&req_ext, Scope::Write, &at.pkg.namespace)?;
        let actor = caller.id.clone();
        let (outcome, put) = if header.blake3.is_empty() {
            let spec = super::blob::spec_from_header(header.upload.unwrap_or_default())?;
            let frames = stream.map(|m| match m {
                Ok(pb::PublishFileRequest {
                    msg: Some(pb::publish_file_request::Msg::Data(d)),
                }) => Ok(d),
                Ok(_) => Err(Error::invalid("every message after the header must carry data")),
                Err(s) => Err(super::stream_error(s)),
            });
            let (o, p) = self
                .engine
                .publish_stream(at, header.file_name, spec, frames, actor)
                .await
                .map_err(status)?;
            (o, Some(p))
        } else {
            if recv(&mut stream, self.engine.config().upload_idle_timeout)
                .await?
                .is_some()
            {
                return Err(Status::invalid_argument(
                    "a publish that names a blob by blake3 must not stream data",
                ));
            }
            let op = CatalogOp::Publish {
                at,
                file_name: header.file_name,
                blob: parse_hash(&header.blake3, "blake3")?,
                digests: None,
                actor,
            };
            (self.change(op).await?, None)
        };
        let (blob_new, added_bytes) = put.as_ref().map_or((false, 0), |p| put_answer(&caller, p));
        let CatalogOutcome::Published {
            file,
            package_created,
            version_created,
        } = outcome
        else {
            return Err(Status::internal("publish answered with another outcome"));
        };
        Ok(Response::new(pb::PublishFileResponse {
            file: Some(pb_file(file)),
            package_created,
            version_created,
            blob_new,
            added_bytes,
        }))
    }

    async fn list_packages(
        &self,
        req: Request<pb::ListPackagesRequest>,
    ) -> Result<Response<pb::ListPackagesResponse>, Status> {
        allow(&req, Scope::Read, &req.get_ref().namespace)?;
        let r = req.into_inner();
        bounded("project", &r.project, MAX_FILTER)?;
        bounded("name_contains", &r.name_contains, MAX_FILTER)?;
        let sort = match pb::PackageSort::try_from(r.sort) {
            Ok(pb::PackageSort::Name) => PackageSort::Name,
            Ok(pb::PackageSort::Created) => PackageSort::Created,
            Ok(pb::PackageSort::Size) => PackageSort::Size,
            Err(_) => return Err(Status::invalid_argument(format!("unknown sort {}", r.sort))),
        };
        let filter = PackageFilter {
            namespace: r.namespace,
            project: r.project,
            ty: optional_type(r.r#type)?,
            name_contains: r.name_contains,
            state: state(r.state)?,
            sort,
            descending: r.descending,
        };
        let size = read::page_size(r.page_size).map_err(status)?;
        let page = self
            .read(move |e| read::list_packages(e.index(), &filter, size, &r.page_token))
            .await?;
        Ok(Response::new(pb::ListPackagesResponse {
            packages: page.items.into_iter().map(pb_package).collect(),
            next_page_token: page.next,
        }))
    }

    async fn get_package(&self, req: Request<pb::GetPackageRequest>) -> Result<Response<pb::Package>, Status> {
        let (req_ext, body) = split(req);
        let p = pkg_ref(body.r#ref)?;
        allow(&req_ext, Scope::Read, &p.namespace)?;
        let v = self.read(move |e| read::package(e.index(), &p)).await?;
        Ok(Response::new(pb_package(v)))
    }

    async fn list_versions(
        &self,
        req: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let (req_ext, r) = split(req);
        let p = pkg_ref(r.package)?;
        allow(&req_ext, Scope::Read, &p.namespace)?;
        let (st, size) = (state(r.state)?, read::page_size(r.page_size).map_err(status)?);
        let page = self
            .read(move |e| read::list_versions(e.index(), &p, st, size, &r.page_token))
            .await?;
        Ok(Response::new(pb::ListVersionsResponse {
            versions: page.items.into_iter().map(pb_version).collect(),
            next_page_token: page.next,
        }))
    }

    async fn get_version(&self, req: Request<pb::GetVersionRequest>) -> Result<Response<pb::Version>, Status> {
        let (req_ext, body) = split(req);
        let v = ver_ref(body.r#ref)?;
        allow(&req_ext, Scope::Read, &v.pkg.namespace)?;
        let view = self.read(move |e| read::get_version(e.index(), &v)).await?;
        Ok(Response::new(pb_version(view)))
    }

    async fn list_files(&self, req: Request<pb::ListFilesRequest>) -> Result<Response<pb::ListFilesResponse>, Status> {
        let (req_ext, r) = split(req);
        let v = ver_ref(r.version)?;
        allow(&req_ext, Scope::Read, &v.pkg.namespace)?;
        let (st, size) = (state(r.state)?, read::page_size(r.page_size).map_err(status)?);
        let page = self
            .read(move |e| read::list_files(e.index(), &v, st, size, &r.page_token))
            .await?;
        Ok(Response::new(pb::ListFilesResponse {
            files: page.items.into_iter().map(pb_file).collect(),
            next_page_token: page.next,
        }))
    }

    async fn delete_package(&self, req: Request<pb::PackageRef>) -> Result<Response<pb::Package>, Status> {
        let (req_ext, body) = split(req);
        let p = pkg_ref(Some(body))?;
        let actor = allow(&req_ext, Scope::Delete, &p.namespace)?.id.clone();
        self.change(CatalogOp::Delete {
            target: Target::Package(p.clone()),
            actor,
        })
        .await?;
        let v = self.read(move |e| read::package(e.index(), &p)).await?;
        Ok(Response::new(pb_package(v)))
    }

    async fn delete_version(&self, req: Request<pb::VersionRef>) -> Result<Response<pb::Version>, Status> {
        let (req_ext, body) = split(req);
        let v = ver_ref(Some(body))?;
        let actor = allow(&req_ext, Scope::Delete, &v.pkg.namespace)?.id.clone();
        self.change(CatalogOp::Delete {
            target: Target::Version(v.clone()),
            actor,
        })
        .await?;
        let view = self.read(move |e| read::version(e.index(), &v)).await?;
        Ok(Response::new(pb_version(view)))
    }

    async fn delete_file(&self, req: Request<pb::FileRef>) -> Result<Response<pb::PackageFile>, Status> {
        let (req_ext, body) = split(req);
        let f = file_ref(body)?;
        let actor = allow(&req_ext, Scope::Delete, &f.ver.pkg.namespace)?.id.clone();
        self.change(CatalogOp::Delete {
            target: Target::File(f.clone()),
            actor,
        })
        .await?;
        let view = self.read(move |e| read::get_file(e.index(), &f)).await?;
        Ok(Response::new(pb_file(view)))
    }

    async fn restore_package(&self, req: Request<pb::PackageRef>) -> Result<Response<pb::Package>, Status> {
        let (req_ext, body) = split(req);
        let p = pkg_ref(Some(body))?;
        let actor = allow(&req_ext, Scope::Write, &p.namespace)?.id.clone();
        self.change(CatalogOp::Restore {
            target: Target::Package(p.clone()),
            actor,
        })
        .await?;
        let v = self.read(move |e| read::package(e.index(), &p)).await?;
        Ok(Response::new(pb_package(v)))
    }

    async fn restore_version(&self, req: Request<pb::VersionRef>) -> Result<Response<pb::Version>, Status> {
        let (req_ext, body) = split(req);
        let v = ver_ref(Some(body))?;
        let actor = allow(&req_ext, Scope::Write, &v.pkg.namespace)?.id.clone();
        self.change(CatalogOp::Restore {
            target: Target::Version(v.clone()),
            actor,
        })
        .await?;
        let view = self.read(move |e| read::version(e.index(), &v)).await?;
        Ok(Response::new(pb_version(view)))
    }

    async fn restore_file(&self, req: Request<pb::FileRef>) -> Result<Response<pb::PackageFile>, Status> {
        let (req_ext, body) = split(req);
        let f = file_ref(body)?;
        let actor = allow(&req_ext, Scope::Write, &f.ver.pkg.namespace)?.id.clone();
        self.change(CatalogOp::Restore {
            target: Target::File(f.clone()),
            actor,
        })
        .await?;
        let view = self.read(move |e| read::get_file(e.index(), &f)).await?;
        Ok(Response::new(pb_file(view)))
    }

    async fn record_download(&self, req: Request<pb::FileRef>) -> Result<Response<pb::PackageFile>, Status> {
        let (req_ext, body) = split(req);
        let f = file_ref(body)?;
        allow(&req_ext, Scope::Read, &f.ver.pkg.namespace)?;
        match self.change(CatalogOp::Download(f)).await? {
            CatalogOutcome::File(v) => Ok(Response::new(pb_file(v))),
            _ => Err(Status::internal("download answered with another outcome")),
        }
    }

    async fn set_duplicate_policy(
        &self,
        req: Request<pb::DuplicatePolicy>,
    ) -> Result<Response<pb::DuplicatePolicy>, Status> {
        let actor = allow(&req, Scope::Admin, &req.get_ref().namespace)?.id.clone();
        let p = req.into_inner();
        let op = CatalogOp::SetPolicy {
            namespace: p.namespace.clone(),
            ty: package_type(p.r#type)?,
            policy: DupPolicy {
                allow_duplicates: p.allow_duplicates,
                exception_regex: p.exception_regex.clone(),
            },
            actor,
        };
        self.change(op).await?;
        Ok(Response::new(p))
    }

    async fn get_duplicate_policy(
        &self,
        req: Request<pb::GetDuplicatePolicyRequest>,
    ) -> Result<Response<pb::DuplicatePolicy>, Status> {
        allow(&req, Scope::Read, &req.get_ref().namespace)?;
        let r = req.into_inner();
        let ty = package_type(r.r#type)?;
        let ns = r.namespace.clone();
        let p = self.read(move |e| read::duplicate_policy(e.index(), &ns, ty)).await?;
        Ok(Response::new(pb::DuplicatePolicy {
            namespace: r.namespace,
            r#type: r.r#type,
            allow_duplicates: p.allow_duplicates,
            exception_regex: p.exception_regex,
        }))
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        // One namespace's trail needs admin there; the whole trail, everywhere.
        match req.get_ref().namespace.as_str() {
            "" => allow_everywhere(&req, Scope::Admin)?,
            ns => allow(&req, Scope::Admin, ns)?,
        };
        let r = req.into_inner();
        for (what, v) in [
            ("project", &r.project),
            ("name", &r.name),
            ("action", &r.action),
            ("actor", &r.actor),
        ] {
            bounded(what, v, MAX_FILTER)?;
        }
        let filter = EventFilter {
            namespace: r.namespace,
            project: r.project,
            name: r.name,
            action: r.action,
            actor: r.actor,
            since_ms: r.since_unix_ms,
            until_ms: r.until_unix_ms,
        };
        let size = read::page_size(r.page_size).map_err(status)?;
        let page = blocking_read(&self.engine, move |e| {
            read::list_events(e.index(), &filter, size, &r.page_token)
        })
        .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.items.into_iter().map(|(id, e)| pb_event(id, e)).collect(),
            next_page_token: page.next,
        }))
    }
}
