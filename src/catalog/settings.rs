//! The catalog's stored settings and bookkeeping: duplicate policies,
//! retention policies, daily usage snapshots and the sweep record.

use super::apply::Ctx;
use super::model::PackageType;
use super::ops::CatalogOutcome;
use super::records::{self as rec, DupPolicy, EventRec, encode};
use super::rules::compile;
use crate::error::{Error, Result};
use crate::index::Cf;

impl Ctx<'_, '_> {
    pub(super) fn set_policy(
        &mut self,
        namespace: &str,
        ty: PackageType,
        policy: &DupPolicy,
        actor: &str,
    ) -> Result<CatalogOutcome> {
        super::model::validate_namespace(namespace)?;
        if !policy.exception_regex.is_empty() {
            compile(&policy.exception_regex)?;
        }
        self.txn
            .put(Cf::CatalogIdx, rec::policy_key(namespace, ty), encode(policy));
        self.event(EventRec {
            actor: actor.to_string(),
            action: "set-policy".into(),
            target: "namespace".into(),
            namespace: namespace.to_string(),
            ty: Some(ty),
            ..Default::default()
        });
        Ok(CatalogOutcome::Done)
    }

    pub(super) fn set_retention_policy(
        &mut self,
        name: &str,
        namespace: &str,
        policy: Option<&[u8]>,
        actor: &str,
    ) -> Result<CatalogOutcome> {
        let key = rec::retention_policy_key(namespace, name);
        let action = match policy {
            Some(p) => {
                self.txn.put(Cf::CatalogIdx, key, p.to_vec());
                "set-retention-policy"
            }
            None if self.txn.get(Cf::CatalogIdx, &key)?.is_none() => {
                return Err(Error::NotFound(format!(
                    "retention policy {name:?} in namespace {namespace}"
                )));
            }
            None => {
                self.txn.delete(Cf::CatalogIdx, key);
                "delete-retention-policy"
            }
        };
        self.event(EventRec {
            actor: actor.to_string(),
            action: action.into(),
            target: "policy".into(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            ..Default::default()
        });
        Ok(CatalogOutcome::Done)
    }

    pub(super) fn daily_usage(
        &mut self,
        day: u64,
        usage: &[u8],
        namespaces: &[(String, Vec<u8>)],
        packages: &[(u64, u64)],
        keep_days: u64,
    ) -> Result<CatalogOutcome> {
        self.txn.put(Cf::CatalogIdx, rec::day_key(day), usage.to_vec());
        let old = day.saturating_sub(keep_days);
        let index = self.txn.index();
        for (ns, u) in namespaces {
            use rec::namespace_day_key as key;
            self.txn.put(Cf::CatalogIdx, key(ns, day), u.clone());
            for kv in index.scan(Cf::CatalogIdx, &key(ns, 0), Some(&key(ns, old)), false) {
                self.txn.delete(Cf::CatalogIdx, kv?.0.to_vec());
            }
        }
        for (pkg, bytes) in packages {
            self.txn.put(
                Cf::CatalogIdx,
                rec::package_day_key(day, *pkg),
                bytes.to_be_bytes().to_vec(),
            );
        }
        // Expire the oldest day, if any is due (one a day keeps up).
        let from = rec::package_day_key(0, 0);
        let to = rec::package_day_key(old, 0);
        for kv in index.scan(Cf::CatalogIdx, &from, Some(&to), false).take(100_000) {
            self.txn.delete(Cf::CatalogIdx, kv?.0.to_vec());
        }
        for kv in index.scan(Cf::CatalogIdx, &rec::day_key(0), Some(&rec::day_key(old)), false) {
            self.txn.delete(Cf::CatalogIdx, kv?.0.to_vec());
        }
        Ok(CatalogOutcome::Done)
    }

    pub(super) fn sweep_state(&mut self, state: Option<&[u8]>) -> Result<CatalogOutcome> {
        match state {
            Some(s) => self.txn.put(Cf::CatalogIdx, rec::SWEEP_KEY, s.to_vec()),
            None => self.txn.delete(Cf::CatalogIdx, rec::SWEEP_KEY),
        }
        Ok(CatalogOutcome::Done)
    }
}
