//! `RetentionService`: policies, plans, sweeps and garbage collection.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb::{self, retention_service_server::RetentionService};
use super::{allow, allow_everywhere, allow_scope, principal, status};
use crate::auth::{Principal, Scope};
use crate::catalog::CatalogOp;
use crate::engine::Engine;
use crate::error::Error;
use crate::gc::GcOptions;
use crate::retention::policy::{KeepFiles, Order};
use crate::retention::{self, Policy, Rules, plan};

/// Plan items per streamed message.
const PLAN_BATCH: usize = 500;

pub struct RetentionApi {
    pub engine: Arc<Engine>,
}

type PlanStream = Pin<Box<dyn Stream<Item = Result<pb::PlanResponse, Status>> + Send>>;
type SweepStream = Pin<Box<dyn Stream<Item = Result<pb::SweepProgress, Status>> + Send>>;

fn rules_from(r: Option<pb::RetentionRules>) -> Rules {
    let r = r.unwrap_or_default();
    Rules {
        keep_latest: r.keep_latest,
        older_than_days: r.older_than_days,
        not_downloaded_days: r.not_downloaded_days,
    }
}

fn rules_to(r: &Rules) -> pb::RetentionRules {
    pb::RetentionRules {
        keep_latest: r.keep_latest,
        older_than_days: r.older_than_days,
        not_downloaded_days: r.not_downloaded_days,
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

pub fn policy_from(p: pb::RetentionPolicy) -> Result<Policy, Status> {
    let order = match p.order.as_str() {
        "" | "published" => Order::Published,
        "version" => Order::Version,
        o => {
            return Err(status(Error::invalid(format!(
                "order is {o:?}; expected \"published\" or \"version\""
            ))));
        }
    };
    let policy = Policy {
        name: p.name,
        namespace: p.namespace,
        project: opt(p.project),
        package_types: p.package_types,
        package_name: opt(p.package_name),
        exclude_packages: opt(p.exclude_packages),
        include_versions: opt(p.include_versions),
        exclude_versions: opt(p.exclude_versions),
        protected: p.protected,
        keep_n_duplicated_package_files: match p.keep_n_duplicated_package_files {
            0 => None,
            n => Some(KeepFiles::Count(n)),
        },
        order,
        versions: rules_from(p.versions),
        prereleases: p.prereleases.map(|r| rules_from(Some(r))),
    };
    policy.compile().map_err(status)?;
    Ok(policy)
}

pub fn policy_to(p: &Policy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        project: p.project.clone().unwrap_or_default(),
        package_types: p.package_types.clone(),
        package_name: p.package_name.clone().unwrap_or_default(),
        exclude_packages: p.exclude_packages.clone().unwrap_or_default(),
        include_versions: p.include_versions.clone().unwrap_or_default(),
        exclude_versions: p.exclude_versions.clone().unwrap_or_default(),
        protected: p.protected.clone(),
        keep_n_duplicated_package_files: match &p.keep_n_duplicated_package_files {
            Some(KeepFiles::Count(n)) => *n,
            _ => 0,
        },
        order: match p.order {
            Order::Published => "published".into(),
            Order::Version => "version".into(),
        },
        versions: Some(rules_to(&p.versions)),
        prereleases: p.prereleases.as_ref().map(rules_to),
    }
}

fn item_to(it: retention::PlanItem) -> pb::PlanItem {
    pb::PlanItem {
        policy: it.policy,
        action: it.action.into(),
        namespace: it.namespace,
        project: it.project,
        package_type: it.package_type,
        package: it.package,
        version: it.version,
        file_id: it.file_id,
        file_name: it.file_name,
        files: it.files,
        logical_bytes: it.logical_bytes,
        reason: it.reason,
    }
}

fn summary_to(s: retention::PlanSummary) -> pb::PlanSummary {
    pb::PlanSummary {
        policies: s.policies,
        packages_scanned: s.packages_scanned,
        versions_scanned: s.versions_scanned,
        files_scanned: s.files_scanned,
        versions: s.versions,
        files: s.files,
        logical_bytes: s.logical_bytes,
        blobs_freed: s.blobs_freed,
        unique_bytes: s.unique_bytes,
        chunks_freed: s.chunks_freed,
        physical_bytes: s.physical_bytes,
        elapsed_ms: s.elapsed_ms,
        namespace_scoped: s.namespace_scoped,
    }
}

/// A plan or sweep request's (policy, namespace) and the policies it
/// names, each checked against the caller's grant for `scope`. "Every
/// policy" with no namespace means every namespace, so it needs a grant
/// over all of them.
type Selection = (Option<String>, Option<String>, Vec<retention::Compiled>);

fn selected(engine: &Engine, p: &Principal, scope: Scope, req: &pb::PlanRequest) -> Result<Selection, Status> {
    let (policy, ns) = (opt(req.policy.clone()), opt(req.namespace.clone()));
    if policy.is_none() && ns.is_none() {
        p.require_everywhere(scope).map_err(status)?;
    }
    let ns = match (&policy, ns) {
        (Some(name), None) => Some(resolve(engine, p, scope, name, "")?.namespace),
        (_, ns) => ns,
    };
    let policies = plan::select(engine.index(), policy.as_deref(), ns.as_deref()).map_err(status)?;
    for c in &policies {
        p.require(scope, &c.policy.namespace).map_err(status)?;
    }
    Ok((policy, ns, policies))
}

/// The policy `name` of `namespace`, or (empty) the one policy of that
/// name among the namespaces the caller may use with `scope`. Policies of
/// namespaces the caller may not use are never looked at: for it they do
/// not exist.
fn resolve(engine: &Engine, p: &Principal, scope: Scope, name: &str, namespace: &str) -> Result<Policy, Status> {
    super::bounded("policy name", name, 128)?;
    // A missing scope is said as such; only namespaces are hidden.
    p.require_scope(scope).map_err(status)?;
    if !namespace.is_empty() {
        p.require(scope, namespace).map_err(status)?;
        return retention::get(engine.index(), namespace, name).map_err(status);
    }
    let mut found = retention::named(engine.index(), name, |ns| p.require(scope, ns).is_ok()).map_err(status)?;
    match found.len() {
        0 => Err(status(retention::not_found(name))),
        1 => Ok(found.remove(0)),
        _ => Err(status(Error::invalid(format!(
            "retention policy {name:?} exists in namespaces {:?}: name the namespace",
            found.iter().map(|x| x.namespace.as_str()).collect::<Vec<_>>()
        )))),
    }
}

#[tonic::async_trait]
impl RetentionService for RetentionApi {
    async fn set_policy(&self, req: Request<pb::RetentionPolicy>) -> Result<Response<pb::RetentionPolicy>, Status> {
        let p = allow(&req, Scope::Admin, &req.get_ref().namespace)?;
        let policy = policy_from(req.into_inner())?;
        retention::check_room(self.engine.index(), &policy).map_err(status)?;
        let op = CatalogOp::SetRetentionPolicy {
            name: policy.name.clone(),
            namespace: policy.namespace.clone(),
            policy: Some(policy.encode()),
            actor: p.id.clone(),
        };
        self.engine.catalog(op).await.map_err(status)?;
        Ok(Response::new(policy_to(&policy)))
    }

    async fn get_policy(&self, req: Request<pb::GetPolicyRequest>) -> Result<Response<pb::RetentionPolicy>, Status> {
        let p = allow_scope(&req, Scope::Read)?;
        let r = req.get_ref();
        let policy = resolve(&self.engine, &p, Scope::Read, &r.name, &r.namespace)?;
        Ok(Response::new(policy_to(&policy)))
    }

    async fn list_policies(
        &self,
        req: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let p = match req.get_ref().namespace.as_str() {
            "" => allow_scope(&req, Scope::Read)?,
            ns => allow(&req, Scope::Read, ns)?,
        };
        let ns = opt(req.into_inner().namespace);
        let policies = retention::list(self.engine.index())
            .map_err(status)?
            .iter()
            .filter(|x| ns.as_deref().is_none_or(|n| n == x.namespace) && p.require(Scope::Read, &x.namespace).is_ok())
            .map(policy_to)
            .collect();
        Ok(Response::new(pb::ListPoliciesResponse { policies }))
    }

    async fn delete_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::DeletePolicyResponse>, Status> {
        let p = allow_scope(&req, Scope::Admin)?;
        let r = req.get_ref();
        let policy = resolve(&self.engine, &p, Scope::Admin, &r.name, &r.namespace)?;
        let op = CatalogOp::SetRetentionPolicy {
            name: policy.name,
            namespace: policy.namespace,
            policy: None,
            actor: p.id.clone(),
        };
        self.engine.catalog(op).await.map_err(status)?;
        Ok(Response::new(pb::DeletePolicyResponse {}))
    }

    type PlanStream = PlanStream;

    async fn plan(&self, req: Request<pb::PlanRequest>) -> Result<Response<PlanStream>, Status> {
        let p = principal(&req)?;
        let (_, _, policies) = selected(&self.engine, &p, Scope::Read, req.get_ref())?;
        // A tenant learns what leaves its namespace; only a token granted
        // every namespace learns what leaves the store.
        let freed = match p.sees_everything() {
            true => plan::Freed::Store,
            false => plan::Freed::Namespace,
        };
        let (tx, rx) = mpsc::channel::<Result<pb::PlanResponse, Status>>(4);
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(PLAN_BATCH);
            let r = plan::plan(engine.index(), &policies, crate::now_ms(), freed, &mut |it| {
                batch.push(item_to(it));
                if batch.len() == PLAN_BATCH {
                    let items = std::mem::take(&mut batch);
                    tx.blocking_send(Ok(pb::PlanResponse { items, summary: None }))
                        .map_err(|_| Error::Unavailable("client went away".into()))?;
                }
                Ok(())
            });
            let last = r.map(|s| pb::PlanResponse {
                items: batch,
                summary: Some(summary_to(s)),
            });
            let _ = tx.blocking_send(last.map_err(status));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type SweepStream = SweepStream;

    async fn sweep(&self, req: Request<pb::PlanRequest>) -> Result<Response<SweepStream>, Status> {
        let p = principal(&req)?;
        // The sweep selects again itself: a resumed one has only the names.
        let (policy, ns, _) = selected(&self.engine, &p, Scope::Delete, req.get_ref())?;
        let (ptx, mut prx) = mpsc::channel(16);
        let (tx, rx) = mpsc::channel::<Result<pb::SweepProgress, Status>>(16);
        let engine = self.engine.clone();
        // The sweep runs to the end even if the client goes away.
        let run = tokio::spawn(async move { engine.sweep(policy, ns, Some(ptx)).await });
        tokio::spawn(async move {
            while let Some(s) = prx.recv().await {
                let _ = tx.send(Ok(progress_to(s))).await;
            }
            if let Ok(Err(e)) = run.await {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn collect_garbage(&self, req: Request<pb::GcRequest>) -> Result<Response<pb::GcResponse>, Status> {
        allow_everywhere(&req, Scope::Admin)?;
        let opts = GcOptions {
            dry_run: req.get_ref().dry_run,
            ..GcOptions::from(&self.engine.config().gc)
        };
        let r = self.engine.gc(opts).await.map_err(status)?;
        Ok(Response::new(pb::GcResponse {
            dry_run: r.dry_run,
            chunks_collected: r.chunks_collected,
            bytes_collected: r.bytes_collected,
            chunks_condemned: r.chunks_condemned,
            bytes_condemned: r.bytes_condemned,
            packs_compacted: r.packs_compacted,
            records_copied: r.records_copied,
            bytes_copied: r.bytes_copied,
            packs_deferred: r.packs_deferred,
            packs_deleted: r.packs_deleted,
            bytes_deleted: r.bytes_deleted,
            dead_bytes: r.dead_bytes,
            elapsed_ms: r.elapsed_ms,
        }))
    }
}

fn progress_to(s: retention::sweep::SweepProgress) -> pb::SweepProgress {
    pb::SweepProgress {
        total: s.total,
        done: s.done,
        versions_deleted: s.versions_deleted,
        files_deleted: s.files_deleted,
        skipped: s.skipped,
        logical_bytes: s.logical_bytes,
        finished: s.finished,
    }
}
