//! Retention: cleanup policies, plans (dry runs) and sweeps.
//!
//! A [`Policy`] covers a namespace (or one project of it), optionally only
//! some package types and names. Its rules pick versions and files to
//! soft-delete; [`plan`] lists them with the bytes they would free and
//! [`crate::Engine::sweep`] deletes them into the trash. What a sweep
//! deletes is restorable for the trash window; purge, then GC, free it.
//!
//! - [`versions`]: each ecosystem's version order and prerelease test. Pure.
//! - [`policy`]: the policy model, validation, and the rules applied to
//!   one package's versions. Pure.
//! - [`plan`]: walks the catalog (one snapshot) and counts the bytes freed.
//! - [`freeable`]: idle packages and each policy's plan, for the report.

pub mod freeable;
pub mod plan;
pub mod policy;
pub mod sweep;
pub mod versions;

pub use plan::{Plan, PlanItem, PlanSummary};
pub use policy::{Compiled, Policy, Rules};

use crate::catalog::records as rec;
use crate::error::{Error, Result};
use crate::index::{Cf, Index};

/// Audit actor of every deletion a sweep makes.
pub const ACTOR: &str = "retention-policy";

/// Policies one namespace may have: a plan compiles and holds them all.
pub const MAX_POLICIES: usize = 100;

/// Refuses a new policy for a namespace that has [`MAX_POLICIES`] already
/// (replacing one of them is fine). Checked before the change is queued:
/// two racing creations can pass it together, by one each.
pub fn check_room(index: &Index, p: &Policy) -> Result<()> {
    let others = of_namespace(index, &p.namespace)?
        .iter()
        .filter(|x| x.name != p.name)
        .count();
    if others >= MAX_POLICIES {
        return Err(Error::ResourceExhausted(format!(
            "namespace {:?} has {others} retention policies, the limit is {MAX_POLICIES}",
            p.namespace
        )));
    }
    Ok(())
}

/// The answer for a policy a caller cannot see: the same as for one that
/// does not exist (names are per namespace; another's say nothing).
pub fn not_found(name: &str) -> Error {
    Error::NotFound(format!("retention policy {name:?}"))
}

/// A stored policy of a namespace by name.
pub fn get(index: &Index, namespace: &str, name: &str) -> Result<Policy> {
    match index.get(Cf::CatalogIdx, &rec::retention_policy_key(namespace, name))? {
        Some(v) => Policy::decode(&v),
        None => Err(not_found(name)),
    }
}

/// Every stored policy, by namespace and name.
pub fn list(index: &Index) -> Result<Vec<Policy>> {
    let (from, to) = rec::tag::range(rec::tag::RETENTION_POLICY);
    scan(index, &from, &to)
}

/// A namespace's policies, by name.
pub fn of_namespace(index: &Index, namespace: &str) -> Result<Vec<Policy>> {
    let from = rec::retention_policy_prefix(namespace);
    let to = rec::prefix_end(&from).expect("a tagged prefix has an end");
    scan(index, &from, &to)
}

/// The policies named `name`, in every namespace `visible` passes (the
/// caller's), by namespace.
pub fn named(index: &Index, name: &str, visible: impl Fn(&str) -> bool) -> Result<Vec<Policy>> {
    Ok(list(index)?
        .into_iter()
        .filter(|p| p.name == name && visible(&p.namespace))
        .collect())
}

fn scan(index: &Index, from: &[u8], to: &[u8]) -> Result<Vec<Policy>> {
    index
        .scan(Cf::CatalogIdx, from, Some(to), false)
        .map(|kv| Policy::decode(&kv?.1))
        .collect()
}
