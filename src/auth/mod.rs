//! Tokens, scopes and namespace checks.
//!
//! A token is `stw_` + 64 hex characters (32 random bytes). The daemon keeps
//! only its SHA-256: tokens are random, so a fast hash is enough, and a
//! stolen config does not hold usable tokens. Lookups compare hashes in
//! constant time. On first start the daemon writes an admin token to
//! `<data_dir>/admin.token` (mode 0600) for local use.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};

pub const TOKEN_PREFIX: &str = "stw_";
/// File in the data dir holding the local admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Id of the local admin token in audit events.
pub const LOCAL_ADMIN_ID: &str = "local-admin";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Get, Stat, FindMissing, catalog listings, RecordDownload.
    Read,
    /// Put, PublishFile, Restore*.
    Write,
    /// Delete*.
    Delete,
    /// Policies, stats, check, purge, audit, rebuild.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "delete" => Ok(Scope::Delete),
            "admin" => Ok(Scope::Admin),
            other => Err(Error::invalid(format!(
                "unknown scope {other:?}; choose from read, write, delete, admin"
            ))),
        }
    }
}

/// A token as the config lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Names the token in audit events and errors.
    pub id: String,
    /// `sha256:` + hex SHA-256 of the token.
    pub hash: String,
    pub scopes: BTreeSet<Scope>,
    /// Namespaces it may use: exact names, `group/*` (the group and every
    /// namespace under it), or `*` (all).
    pub namespaces: Vec<String>,
}

/// The caller, once its token checked out.
#[derive(Debug)]
pub struct Principal {
    pub id: String,
    scopes: BTreeSet<Scope>,
    namespaces: Vec<String>,
}

impl Principal {
    fn may_use(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|p| match p.strip_suffix("/*") {
            _ if p == "*" => true,
            Some(group) => ns == group || ns.strip_prefix(group).is_some_and(|rest| rest.starts_with('/')),
            None => p == ns,
        })
    }

    /// The scope is granted (admin implies every scope).
    pub fn require_scope(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "token {:?} lacks the {:?} scope",
            self.id,
            scope.as_str()
        )))
    }

    /// The token's grant covers every namespace (`*`): it may learn what the
    /// store as a whole holds (dedup across namespaces, for one).
    pub fn sees_everything(&self) -> bool {
        self.namespaces.iter().any(|p| p == "*")
    }

    /// The scope is granted over every namespace (`*`): for store-wide
    /// requests (stats, check, purge, the whole audit trail).
    pub fn require_everywhere(&self, scope: Scope) -> Result<()> {
        self.require_scope(scope)?;
        if self.sees_everything() {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "token {:?} is limited to namespaces {:?}; this request covers every namespace",
            self.id, self.namespaces
        )))
    }

    /// The scope is granted and the namespace is one the token may use.
    pub fn require(&self, scope: Scope, ns: &str) -> Result<()> {
        self.require_scope(scope)?;
        if self.may_use(ns) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "token {:?} may not use namespace {ns:?}",
            self.id
        )))
    }
}

/// The tokens a daemon accepts.
pub struct Auth {
    tokens: Vec<([u8; 32], Arc<Principal>)>,
}

fn hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Compares without an early exit, so timing says nothing about where
/// two hashes differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random token and the config hash of it.
pub fn generate() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
    let h = format!("sha256:{}", hex::encode(hash(&token)));
    (token, h)
}

fn parse_hash(entry: &TokenEntry) -> Result<[u8; 32]> {
    let hex_part = entry
        .hash
        .strip_prefix("sha256:")
        .ok_or_else(|| Error::invalid(format!("token {:?}: hash must start with \"sha256:\"", entry.id)))?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut h).map_err(|_| {
        Error::invalid(format!(
            "token {:?}: hash must be sha256: and 64 hex characters",
            entry.id
        ))
    })?;
    Ok(h)
}

impl Auth {
    /// The configured tokens plus the local admin token of `data_dir`
    /// (created on first start).
    pub fn load(entries: &[TokenEntry], data_dir: &Path) -> Result<Self> {
        let mut tokens = Vec::new();
        for e in entries {
            if e.id.is_empty() || e.scopes.is_empty() || e.namespaces.is_empty() {
                return Err(Error::invalid(format!(
                    "token {:?}: id, scopes and namespaces are required",
                    e.id
                )));
            }
            tokens.push((
                parse_hash(e)?,
                Arc::new(Principal {
                    id: e.id.clone(),
                    scopes: e.scopes.clone(),
                    namespaces: e.namespaces.clone(),
                }),
            ));
        }
        let admin = local_admin_token(data_dir)?;
        tokens.push((
            hash(&admin),
            Arc::new(Principal {
                id: LOCAL_ADMIN_ID.into(),
                scopes: [Scope::Admin].into(),
                namespaces: vec!["*".into()],
            }),
        ));
        Ok(Auth { tokens })
    }

    /// The caller of an `authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Arc<Principal>> {
        let header =
            header.ok_or_else(|| Error::Unauthenticated("missing `authorization: Bearer <token>` metadata".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Error::Unauthenticated("authorization must be `Bearer <token>`".into()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::Unauthenticated("the bearer token is empty".into()));
        }
        let h = hash(token);
        // Every entry is compared, found or not.
        let mut found = None;
        for (th, p) in &self.tokens {
            if ct_eq(th, &h) {
                found = Some(p.clone());
            }
        }
        found.ok_or_else(|| Error::Unauthenticated("unknown token".into()))
    }
}

/// Reads the local admin token, creating it (mode 0600) on first start.
pub fn local_admin_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        // Written whole by a rename below, so a short one was edited by hand.
        Ok(t) if t.trim().len() < 32 => {
            return Err(Error::invalid(format!(
                "{} does not hold a token (remove it to make a new one)",
                path.display()
            )));
        }
        Ok(t) => return Ok(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::create_dir_all(data_dir)?;
    let (token, _) = generate();
    let tmp = data_dir.join(format!("{ADMIN_TOKEN_FILE}.tmp"));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{token}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: &[Scope], namespaces: &[&str]) -> Principal {
        Principal {
            id: "t".into(),
            scopes: scopes.iter().copied().collect(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scopes_and_namespace_patterns() {
        let p = principal(&[Scope::Read], &["acme/*", "solo"]);
        assert!(p.require(Scope::Read, "acme").is_ok());
        assert!(p.require(Scope::Read, "acme/web").is_ok());
        assert!(p.require(Scope::Read, "acmex").is_err());
        assert!(p.require(Scope::Read, "solo").is_ok());
        assert!(p.require(Scope::Read, "solo/x").is_err());
        assert!(p.require(Scope::Write, "solo").is_err());
        let a = principal(&[Scope::Admin], &["*"]);
        assert!(a.require(Scope::Delete, "anything").is_ok());
    }

    #[test]
    fn tokens_authenticate_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (token, h) = generate();
        let e = TokenEntry {
            id: "frontend".into(),
            hash: h,
            scopes: [Scope::Read].into(),
            namespaces: vec!["a".into()],
        };
        let auth = Auth::load(&[e], dir.path()).unwrap();
        let p = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(p.id, "frontend");
        assert!(auth.authenticate(Some("Bearer stw_00")).is_err());
        assert!(auth.authenticate(None).is_err());
        let admin = local_admin_token(dir.path()).unwrap();
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {admin}"))).unwrap().id,
            LOCAL_ADMIN_ID
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
