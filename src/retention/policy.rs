//! Cleanup policies and their rules. Pure: a package's versions in, the
//! versions and files to delete out.
//!
//! Rules, per package:
//! - `versions` (and, when set, `prereleases` for prerelease and snapshot
//!   versions, which then are ranked and judged apart from releases):
//!   a version among the `keep_latest` newest is kept; any other is removed
//!   when it matches every age rule given (`older_than_days`: published that
//!   long ago; `not_downloaded_days`: no file downloaded, or if never, not
//!   published, for that long). With no age rule, `keep_latest` alone
//!   decides; with no rule at all, nothing is removed.
//! - `keep_n_duplicated_package_files`: in every version that stays, only
//!   the N newest active files of each name are kept (GitLab's rule).
//! - Filters: `package_types`, `package_name` (regex the name must match),
//!   `exclude_packages`, `include_versions`, `exclude_versions`; and
//!   `protected`: regexes on the package name, the version, or
//!   `name@version` — a version they match is never removed, nor any of its
//!   files. Excluded and protected versions still count in the ranking.

use std::cmp::Ordering;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::versions;
use crate::catalog::model::PackageType;
use crate::catalog::records::FileRec;
use crate::error::{Error, Result};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Longest regex accepted in a policy.
const MAX_REGEX: usize = 1024;
/// Most `protected` patterns a policy may have (each compiles to up to 1 MiB).
pub const MAX_PROTECTED: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_latest: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_downloaded_days: Option<u32>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.keep_latest.is_none() && self.older_than_days.is_none() && self.not_downloaded_days.is_none()
    }
}

/// How "newest" is decided for `keep_latest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Publish time (the version's creation).
    #[default]
    Published,
    /// The ecosystem's version order (SemVer, PEP 440, Maven, ...).
    Version,
}

/// `keep_n_duplicated_package_files`: a count, or "all" (the rule is off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeepFiles {
    Count(u32),
    Word(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    pub namespace: String,
    /// Only this project of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only these package types ("npm", "maven", ...); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_packages: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_versions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_versions: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_n_duplicated_package_files: Option<KeepFiles>,
    #[serde(default)]
    pub order: Order,
    #[serde(default)]
    pub versions: Rules,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prereleases: Option<Rules>,
}

impl Policy {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a policy serializes")
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        serde_json::from_slice(b).map_err(|e| Error::corrupt(format!("stored retention policy: {e}")))
    }

    /// Reads a policy file: TOML, or JSON when it starts with `{`.
    pub fn parse(text: &str) -> Result<Self> {
        let p: Policy = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| Error::invalid(format!("policy JSON: {e}")))?
        } else {
            toml::from_str(text).map_err(|e| Error::invalid(format!("policy TOML: {e}")))?
        };
        p.compile()?;
        Ok(p)
    }

    /// Checks every field and compiles the patterns.
    pub fn compile(&self) -> Result<Compiled> {
        if self.name.is_empty()
            || self.name.len() > 128
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(Error::invalid(format!(
                "policy name {:?} must be 1-128 characters of A-Z a-z 0-9 . _ -",
                self.name
            )));
        }
        crate::catalog::model::validate_namespace(&self.namespace)?;
        if let Some(p) = &self.project {
            crate::catalog::model::validate_project(p)?;
        }
        if self.protected.len() > MAX_PROTECTED {
            return Err(Error::invalid(format!(
                "policy {:?} has {} protected patterns, the limit is {MAX_PROTECTED}",
                self.name,
                self.protected.len()
            )));
        }
        if self.package_types.len() > PackageType::ALL.len() {
            return Err(Error::invalid(format!(
                "policy {:?} lists {} package types; there are {}",
                self.name,
                self.package_types.len(),
                PackageType::ALL.len()
            )));
        }
        let types = self
            .package_types
            .iter()
            .map(|t| t.parse::<PackageType>())
            .collect::<Result<Vec<_>>>()?;
        let keep_files = match &self.keep_n_duplicated_package_files {
            None => None,
            Some(KeepFiles::Count(0)) => {
                return Err(Error::invalid(
                    "keep_n_duplicated_package_files must be at least 1 (or \"all\")",
                ));
            }
            Some(KeepFiles::Count(n)) => Some(*n as usize),
            Some(KeepFiles::Word(w)) if w == "all" => None,
            Some(KeepFiles::Word(w)) => {
                return Err(Error::invalid(format!(
                    "keep_n_duplicated_package_files is {w:?}; expected a number or \"all\""
                )));
            }
        };
        for r in std::iter::once(&self.versions).chain(&self.prereleases) {
            if r.keep_latest == Some(0) && r.older_than_days.is_none() && r.not_downloaded_days.is_none() {
                // Legal, but say so: it removes every version of every package.
                tracing::warn!(policy = %self.name, "keep_latest = 0 with no age rule removes every version");
            }
        }
        let re = |what: &str, s: &Option<String>| s.as_deref().map(|s| regex(what, s)).transpose();
        Ok(Compiled {
            types,
            package_name: re("package_name", &self.package_name)?,
            exclude_packages: re("exclude_packages", &self.exclude_packages)?,
            include_versions: re("include_versions", &self.include_versions)?,
            exclude_versions: re("exclude_versions", &self.exclude_versions)?,
            protected: self
                .protected
                .iter()
                .map(|s| regex("protected", s))
                .collect::<Result<_>>()?,
            keep_files,
            policy: self.clone(),
        })
    }
}

fn regex(what: &str, s: &str) -> Result<Regex> {
    if s.len() > MAX_REGEX {
        return Err(Error::invalid(format!(
            "{what} pattern is longer than {MAX_REGEX} bytes"
        )));
    }
    regex::RegexBuilder::new(s)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Error::invalid(format!("{what} pattern {s:?}: {e}")))
}

/// A validated policy with its patterns compiled.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub policy: Policy,
    types: Vec<PackageType>,
    package_name: Option<Regex>,
    exclude_packages: Option<Regex>,
    include_versions: Option<Regex>,
    exclude_versions: Option<Regex>,
    protected: Vec<Regex>,
    keep_files: Option<usize>,
}

/// One active version of a package and its active files.
#[derive(Clone, Debug)]
pub struct Version {
    pub id: u64,
    pub version: String,
    pub created_ms: i64,
    /// (file id, record), any order.
    pub files: Vec<(u64, FileRec)>,
}

impl Version {
    fn last_used_ms(&self) -> i64 {
        self.files
            .iter()
            .map(|(_, f)| f.last_download_ms)
            .max()
            .unwrap_or(0)
            .max(self.created_ms)
    }
}

/// What a policy removes from one package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Index into the versions given, and why.
    Version(usize, String),
    /// Version index, file index in it, and why.
    File(usize, usize, String),
}

impl Compiled {
    /// Whether the policy covers packages of this project, type and name.
    pub fn covers(&self, project: &str, ty: PackageType, name: &str) -> bool {
        self.policy.project.as_deref().is_none_or(|p| p == project)
            && (self.types.is_empty() || self.types.contains(&ty))
            && self.package_name.as_ref().is_none_or(|r| r.is_match(name))
            && !self.exclude_packages.as_ref().is_some_and(|r| r.is_match(name))
    }

    fn removable(&self, name: &str, version: &str) -> bool {
        self.include_versions.as_ref().is_none_or(|r| r.is_match(version))
            && !self.exclude_versions.as_ref().is_some_and(|r| r.is_match(version))
            && !self
                .protected
                .iter()
                .any(|r| r.is_match(name) || r.is_match(version) || r.is_match(&format!("{name}@{version}")))
    }

    /// Applies the rules to one covered package's active versions.
    pub fn evaluate(&self, ty: PackageType, name: &str, vs: &[Version], now_ms: i64) -> Vec<Removal> {
        let p = &self.policy;
        let pre_rules = p.prereleases.as_ref();
        let mut groups: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for (i, v) in vs.iter().enumerate() {
            let pre = pre_rules.is_some() && versions::is_prerelease(ty, &v.version);
            groups[pre as usize].push(i);
        }
        let newest_first = |a: &usize, b: &usize| -> Ordering {
            let (a, b) = (&vs[*a], &vs[*b]);
            let by = match p.order {
                Order::Published => a.created_ms.cmp(&b.created_ms),
                Order::Version => versions::compare(ty, &a.version, &b.version),
            };
            by.then(a.id.cmp(&b.id)).reverse()
        };
        let mut out = Vec::new();
        let mut removed = vec![false; vs.len()];
        for (pre, (group, rules)) in groups.iter_mut().zip([Some(&p.versions), pre_rules]).enumerate() {
            let Some(r) = rules.filter(|r| !r.is_empty()) else {
                continue;
            };
            group.sort_by(newest_first);
            for (rank, &i) in group.iter().enumerate() {
                let v = &vs[i];
                if r.keep_latest.is_some_and(|n| rank < n as usize) || !self.removable(name, &v.version) {
                    continue;
                }
                let mut why = Vec::new();
                if let Some(n) = r.keep_latest {
                    why.push(format!("not among the {n} newest"));
                }
                if let Some(d) = r.older_than_days {
                    if now_ms - v.created_ms < d as i64 * DAY_MS {
                        continue;
                    }
                    why.push(format!("published over {d} days ago"));
                }
                if let Some(d) = r.not_downloaded_days {
                    if now_ms - v.last_used_ms() < d as i64 * DAY_MS {
                        continue;
                    }
                    why.push(format!("not downloaded for {d} days"));
                }
                if pre == 1 {
                    why.insert(0, "prerelease".into());
                }
                removed[i] = true;
                out.push(Removal::Version(i, why.join(", ")));
            }
        }
        if let Some(keep) = self.keep_files {
            for (i, v) in vs.iter().enumerate() {
                if removed[i] || !self.removable(name, &v.version) {
                    continue;
                }
                let mut by_name: Vec<usize> = (0..v.files.len()).collect();
                by_name.sort_by(|&a, &b| {
                    let (a, b) = (&v.files[a], &v.files[b]);
                    a.1.name.cmp(&b.1.name).then(b.0.cmp(&a.0))
                });
                for w in by_name.chunk_by(|&a, &b| v.files[a].1.name == v.files[b].1.name) {
                    for &f in w.iter().skip(keep) {
                        let why = format!("duplicate of {:?}: keeps the {keep} newest", v.files[f].1.name);
                        out.push(Removal::File(i, f, why));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: u64, version: &str, age_days: i64, downloaded_days_ago: Option<i64>, files: &[(u64, &str)]) -> Version {
        let now = 1_000 * DAY_MS;
        Version {
            id,
            version: version.into(),
            created_ms: now - age_days * DAY_MS,
            files: files
                .iter()
                .map(|(id, name)| {
                    let f = FileRec {
                        name: (*name).into(),
                        last_download_ms: downloaded_days_ago.map_or(0, |d| now - d * DAY_MS),
                        ..Default::default()
                    };
                    (*id, f)
                })
                .collect(),
        }
    }

    fn policy(toml: &str) -> Compiled {
        Policy::parse(&format!("name = \"t\"\nnamespace = \"acme\"\n{toml}"))
            .unwrap()
            .compile()
            .unwrap()
    }

    fn removed(c: &Compiled, ty: PackageType, vs: &[Version]) -> Vec<String> {
        let mut out: Vec<String> = c
            .evaluate(ty, "pkg", vs, 1_000 * DAY_MS)
            .into_iter()
            .map(|r| match r {
                Removal::Version(i, _) => vs[i].version.clone(),
                Removal::File(i, f, _) => format!("{}#{}", vs[i].version, vs[i].files[f].0),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn each_rule_alone_and_combined() {
        let vs = vec![
            v(1, "1.0.0", 100, None, &[(1, "a.tgz")]),
            v(2, "1.1.0", 50, Some(1), &[(2, "a.tgz")]),
            v(3, "2.0.0-rc.1", 40, None, &[(3, "a.tgz")]),
            v(
                4,
                "1.2.0",
                10,
                None,
                &[(4, "a.tgz"), (5, "a.tgz"), (6, "a.tgz"), (7, "b.tgz")],
            ),
            v(5, "0.9.0", 5, None, &[(8, "a.tgz")]),
        ];
        let npm = PackageType::Npm;
        // Keep the 2 newest by publish time: 0.9.0 (5 days) and 1.2.0 (10).
        let c = policy("versions = { keep_latest = 2 }");
        assert_eq!(removed(&c, npm, &vs), ["1.0.0", "1.1.0", "2.0.0-rc.1"]);
        // By version order instead: 2.0.0-rc.1 and 1.2.0 are newest.
        let c = policy("order = \"version\"\nversions = { keep_latest = 2 }");
        assert_eq!(removed(&c, npm, &vs), ["0.9.0", "1.0.0", "1.1.0"]);
        // Age alone.
        let c = policy("versions = { older_than_days = 45 }");
        assert_eq!(removed(&c, npm, &vs), ["1.0.0", "1.1.0"]);
        // Not downloaded: 1.1.0 was downloaded yesterday.
        let c = policy("versions = { not_downloaded_days = 30 }");
        assert_eq!(removed(&c, npm, &vs), ["1.0.0", "2.0.0-rc.1"]);
        // Combined: beyond the newest 1 AND older than 30 days AND idle 30 days.
        let c = policy("versions = { keep_latest = 1, older_than_days = 30, not_downloaded_days = 30 }");
        assert_eq!(removed(&c, npm, &vs), ["1.0.0", "2.0.0-rc.1"]);
        // Prereleases apart: releases keep 10, prereleases older than 30 days go.
        let c = policy("versions = { keep_latest = 10 }\nprereleases = { older_than_days = 30 }");
        assert_eq!(removed(&c, npm, &vs), ["2.0.0-rc.1"]);
        // Duplicated files: keep 1 of each name in surviving versions.
        let c = policy("keep_n_duplicated_package_files = 1");
        assert_eq!(removed(&c, npm, &vs), ["1.2.0#4", "1.2.0#5"]);
        let c = policy("keep_n_duplicated_package_files = \"all\"");
        assert!(removed(&c, npm, &vs).is_empty());
        // No rule: nothing.
        assert!(removed(&policy(""), npm, &vs).is_empty());
    }

    #[test]
    fn filters_and_protection() {
        let vs = vec![
            v(1, "1.0.0", 100, None, &[(1, "a")]),
            v(2, "1.1.0", 90, None, &[(2, "a")]),
            v(3, "1.2.0", 80, None, &[(3, "a")]),
        ];
        let npm = PackageType::Npm;
        let c = policy("protected = ['^1\\.0\\.0$']\nversions = { older_than_days = 1 }");
        assert_eq!(removed(&c, npm, &vs), ["1.1.0", "1.2.0"]);
        let c = policy("include_versions = '^1\\.1'\nversions = { older_than_days = 1 }");
        assert_eq!(removed(&c, npm, &vs), ["1.1.0"]);
        let c = policy("exclude_versions = '^1\\.1'\nversions = { older_than_days = 1 }");
        assert_eq!(removed(&c, npm, &vs), ["1.0.0", "1.2.0"]);
        let c = policy("protected = ['^pkg@1\\.2']\nversions = { keep_latest = 0 }");
        assert_eq!(removed(&c, npm, &vs), ["1.0.0", "1.1.0"]);
        let c = policy("package_name = '^other'\npackage_types = ['maven']");
        assert!(!c.covers("p", npm, "pkg"));
        assert!(c.covers("p", PackageType::Maven, "other-lib"));
        let c = policy("project = 'web'\nexclude_packages = 'internal'");
        assert!(c.covers("web", npm, "pkg") && !c.covers("api", npm, "pkg") && !c.covers("web", npm, "internal-x"));
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        for (toml, want) in [
            ("package_name = '('", "package_name pattern"),
            ("keep_n_duplicated_package_files = 0", "at least 1"),
            ("keep_n_duplicated_package_files = 'some'", "expected a number"),
            ("package_types = ['rpm']", "rpm"),
            ("versions = { keep = 1 }", "unknown field"),
        ] {
            let e = Policy::parse(&format!("name = \"t\"\nnamespace = \"acme\"\n{toml}")).unwrap_err();
            assert!(e.to_string().contains(want), "{toml}: {e}");
        }
        assert!(Policy::parse("name = \"a b\"\nnamespace = \"acme\"").is_err());
        assert!(Policy::parse("name = \"t\"\nnamespace = \"../x\"").is_err());
    }
}
