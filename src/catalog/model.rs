//! Catalog coordinates and the rules names must follow. Pure.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Package ecosystems. The numbers are stored in keys: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum PackageType {
    Npm = 1,
    Maven = 2,
    Pypi = 3,
    Nuget = 4,
    Rubygems = 5,
    Cargo = 6,
    Conan = 7,
    Composer = 8,
    Helm = 9,
    Terraform = 10,
    Debian = 11,
    Container = 12,
    Generic = 13,
}

impl PackageType {
    pub const ALL: [PackageType; 13] = [
        PackageType::Npm,
        PackageType::Maven,
        PackageType::Pypi,
        PackageType::Nuget,
        PackageType::Rubygems,
        PackageType::Cargo,
        PackageType::Conan,
        PackageType::Composer,
        PackageType::Helm,
        PackageType::Terraform,
        PackageType::Debian,
        PackageType::Container,
        PackageType::Generic,
    ];

    pub fn from_u8(b: u8) -> Result<Self> {
        Self::ALL
            .get((b as usize).wrapping_sub(1))
            .copied()
            .ok_or_else(|| Error::invalid(format!("unknown package type {b}")))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::Npm => "npm",
            PackageType::Maven => "maven",
            PackageType::Pypi => "pypi",
            PackageType::Nuget => "nuget",
            PackageType::Rubygems => "rubygems",
            PackageType::Cargo => "cargo",
            PackageType::Conan => "conan",
            PackageType::Composer => "composer",
            PackageType::Helm => "helm",
            PackageType::Terraform => "terraform",
            PackageType::Debian => "debian",
            PackageType::Container => "container",
            PackageType::Generic => "generic",
        }
    }
}

impl fmt::Display for PackageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PackageType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let all: Vec<_> = Self::ALL.iter().map(|t| t.as_str()).collect();
                Error::invalid(format!("unknown package type {s:?}; known: {}", all.join(", ")))
            })
    }
}

/// Which items a listing returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Active,
    Deleted,
    All,
}

impl State {
    pub fn admits(self, deleted: bool) -> bool {
        match self {
            State::Active => !deleted,
            State::Deleted => deleted,
            State::All => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PkgRef {
    pub namespace: String,
    pub project: String,
    pub ty: PackageType,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VerRef {
    pub pkg: PkgRef,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileRef {
    pub ver: VerRef,
    pub file_id: u64,
}

pub const MAX_NAME: usize = 255;
pub const MAX_VERSION: usize = 128;
pub const MAX_FILE_NAME: usize = 255;
pub const MAX_PROJECT: usize = 128;

impl PkgRef {
    pub fn validate(&self) -> Result<()> {
        validate_namespace(&self.namespace)?;
        validate_project(&self.project)?;
        validate_name(self.ty, &self.name)
    }
}

impl VerRef {
    pub fn validate(&self) -> Result<()> {
        self.pkg.validate()?;
        validate_version(&self.version)
    }
}

fn printable(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} is required")));
    }
    if s.len() > max {
        return Err(Error::invalid(format!(
            "{what} is {} bytes, the limit is {max}",
            s.len()
        )));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "{what} {s:?} contains the control character {c:?}"
        )));
    }
    if let Some(c) = s.chars().find(|&c| is_bidi_control(c)) {
        return Err(Error::invalid(format!(
            "{what} {s:?} contains the bidirectional control U+{:04X}, which makes it display as another name",
            c as u32
        )));
    }
    if let Some(c) = s.chars().find(|&c| is_invisible(c)) {
        return Err(Error::invalid(format!(
            "{what} {s:?} contains the invisible character U+{:04X}",
            c as u32
        )));
    }
    if s.trim() != s {
        return Err(Error::invalid(format!("{what} {s:?} starts or ends with whitespace")));
    }
    Ok(())
}

/// Unicode bidirectional controls: embeddings, overrides, isolates and
/// marks (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C). A name
/// holding one can be shown as a different name ("Trojan Source").
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that show as nothing or as a line break: zero-width space,
/// word joiner and invisible operators, the byte-order mark, and the
/// line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{2028}' | '\u{2029}'
    )
}

/// A name that is a path (`/` between segments): not absolute, no empty
/// segment, no trailing `/`.
fn relative_path(what: &str, s: &str) -> Result<()> {
    if s.starts_with('/') {
        return Err(Error::invalid(format!("{what} {s:?} must not start with '/'")));
    }
    if s.ends_with('/') {
        return Err(Error::invalid(format!("{what} {s:?} must not end with '/'")));
    }
    if s.contains("//") {
        return Err(Error::invalid(format!("{what} {s:?} has an empty path segment ('//')")));
    }
    Ok(())
}

fn only(what: &str, s: &str, ok: impl Fn(char) -> bool, allowed: &str) -> Result<()> {
    match s.chars().find(|&c| !ok(c)) {
        Some(c) => Err(Error::invalid(format!(
            "{what} {s:?} contains {c:?}; allowed: {allowed}"
        ))),
        None => Ok(()),
    }
}

fn no_traversal(what: &str, s: &str) -> Result<()> {
    if s.split(['/', '\\']).any(|seg| seg == "." || seg == "..") {
        return Err(Error::invalid(format!("{what} {s:?} has a '.' or '..' path segment")));
    }
    Ok(())
}

/// A project: 1-128 bytes of `[A-Za-z0-9._-]` segments joined by `/`.
pub fn validate_project(p: &str) -> Result<()> {
    printable("project", p, MAX_PROJECT)?;
    no_traversal("project", p)?;
    if p.split('/').any(str::is_empty) {
        return Err(Error::invalid(format!("project {p:?} has an empty path segment")));
    }
    only(
        "project",
        p,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'),
        "A-Z a-z 0-9 . _ - /",
    )
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A package name: printable, no path traversal, plus each ecosystem's
/// simple rules (npm scopes, Maven `group:artifact`, PEP 508 names, ...).
pub fn validate_name(ty: PackageType, n: &str) -> Result<()> {
    printable("package name", n, MAX_NAME)?;
    no_traversal("package name", n)?;
    if n.contains('\\') {
        return Err(Error::invalid(format!("package name {n:?} contains a backslash")));
    }
    let what = format!("{ty} package name");
    match ty {
        PackageType::Npm => {
            if n.len() > 214 {
                return Err(Error::invalid(format!("{what} {n:?} is longer than 214 bytes")));
            }
            let bare = match n.strip_prefix('@') {
                Some(scoped) => {
                    let (scope, rest) = scoped
                        .split_once('/')
                        .ok_or_else(|| Error::invalid(format!("{what} {n:?}: a scoped name is @scope/name")))?;
                    npm_part(&what, n, scope)?;
                    rest
                }
                None => n,
            };
            npm_part(&what, n, bare)
        }
        PackageType::Maven => {
            let (group, artifact) = n
                .split_once(':')
                .ok_or_else(|| Error::invalid(format!("{what} {n:?} must be group:artifact")))?;
            for part in [group, artifact] {
                if part.is_empty() {
                    return Err(Error::invalid(format!("{what} {n:?} must be group:artifact")));
                }
                only(&what, part, name_char, "A-Z a-z 0-9 . _ - in group and artifact")?;
            }
            Ok(())
        }
        PackageType::Pypi => {
            only(&what, n, name_char, "A-Z a-z 0-9 . _ -")?;
            let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
            if !ends_ok(n.chars().next()) || !ends_ok(n.chars().last()) {
                return Err(Error::invalid(format!(
                    "{what} {n:?} must start and end with a letter or digit"
                )));
            }
            Ok(())
        }
        PackageType::Cargo => {
            if n.len() > 64 || !n.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(Error::invalid(format!(
                    "{what} {n:?} must start with a letter and be at most 64 bytes"
                )));
            }
            only(
                &what,
                n,
                |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'),
                "A-Z a-z 0-9 _ -",
            )
        }
        PackageType::Container => {
            for seg in n.split('/') {
                if seg.is_empty() || !seg.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                    return Err(Error::invalid(format!(
                        "{what} {n:?}: each path segment must start with a lowercase letter or digit"
                    )));
                }
                only(
                    &what,
                    seg,
                    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
                    "a-z 0-9 . _ - and / between segments",
                )?;
            }
            Ok(())
        }
        PackageType::Nuget | PackageType::Rubygems | PackageType::Helm | PackageType::Debian => {
            only(&what, n, |c| name_char(c) || c == '+', "A-Z a-z 0-9 . _ - +")
        }
        PackageType::Conan | PackageType::Composer | PackageType::Terraform | PackageType::Generic => {
            only(
                &what,
                n,
                |c| name_char(c) || matches!(c, '+' | '~' | '/' | '@'),
                "A-Z a-z 0-9 . _ - + ~ / @",
            )?;
            relative_path(&what, n)
        }
    }
}

fn npm_part(what: &str, full: &str, part: &str) -> Result<()> {
    if part.is_empty() || part.starts_with(['.', '_']) {
        return Err(Error::invalid(format!(
            "{what} {full:?}: a name part must not be empty or start with . or _"
        )));
    }
    only(
        what,
        part,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | '~'),
        "a-z 0-9 - . _ ~ (lowercase)",
    )
}

/// A version: 1-128 printable bytes, no `/` or `\`, not `.` or `..`.
pub fn validate_version(v: &str) -> Result<()> {
    printable("version", v, MAX_VERSION)?;
    if v == "." || v == ".." || v.contains(['/', '\\']) {
        return Err(Error::invalid(format!(
            "version {v:?} must not be '.' or '..' or contain / or \\"
        )));
    }
    only(
        "version",
        v,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '~' | ':' | '!'),
        "A-Z a-z 0-9 . _ - + ~ : !",
    )
}

/// A file name: 1-255 printable bytes, one path segment (no `/` or `\`).
pub fn validate_file_name(f: &str) -> Result<()> {
    printable("file name", f, MAX_FILE_NAME)?;
    if f == "." || f == ".." || f.contains(['/', '\\']) {
        return Err(Error::invalid(format!(
            "file name {f:?} must be a single path segment (no /, \\, '.' or '..')"
        )));
    }
    Ok(())
}

/// Checks a namespace name: 1-128 bytes of `[A-Za-z0-9._-]` segments joined by `/`.
pub fn validate_namespace(ns: &str) -> Result<()> {
    if ns.is_empty() {
        return Err(Error::invalid("namespace is required"));
    }
    if ns.len() > 128 {
        return Err(Error::invalid(format!(
            "namespace is {} bytes, the limit is 128",
            ns.len()
        )));
    }
    for seg in ns.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(Error::invalid(format!(
                "namespace {ns:?} has an empty, '.' or '..' segment"
            )));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(Error::invalid(format!(
                "namespace {ns:?} contains {c:?}; allowed: A-Z a-z 0-9 . _ - /"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_ecosystem() {
        use PackageType::*;
        for (ty, ok) in [
            (Npm, "@acme/left-pad"),
            (Npm, "left-pad"),
            (Maven, "org.acme:core-lib"),
            (Pypi, "requests_oauth"),
            (Cargo, "serde_json"),
            (Container, "acme/web/api"),
            (Generic, "tools/linux+x86"),
        ] {
            validate_name(ty, ok).unwrap_or_else(|e| panic!("{ty} {ok}: {e}"));
        }
        for (ty, bad) in [
            (Npm, "@acme"),
            (Npm, "Left-Pad"),
            (Maven, "org.acme"),
            (Maven, ":core"),
            (Pypi, "-x"),
            (Cargo, "1abc"),
            (Container, "Acme/web"),
            (Generic, "../etc/passwd"),
            (Generic, "/etc/passwd"),
            (Generic, "a//b"),
            (Generic, "a/"),
            (Generic, "a/./b"),
            (Terraform, "/ns/name"),
            (Generic, "a\nb"),
            (Generic, ""),
        ] {
            assert!(validate_name(ty, bad).is_err(), "{ty} {bad:?} accepted");
        }
        assert!(validate_version("1.0.0-rc.1+build.5").is_ok());
        assert!(validate_version("../1").is_err());
        assert!(validate_file_name("core-1.0.jar").is_ok());
        assert!(validate_file_name("a/b.jar").is_err());
        assert!(validate_file_name("..").is_err());
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let e = validate_file_name(&format!("invoice{c}fdp.exe")).unwrap_err();
            assert!(e.to_string().contains("bidirectional control"), "{c:?}: {e}");
        }
        for c in ['\u{200B}', '\u{FEFF}', '\u{2028}', '\u{0085}', '\u{009B}'] {
            assert!(validate_file_name(&format!("a{c}b.tgz")).is_err(), "{c:?} accepted");
        }
        // Other scripts and ZWNJ (Persian) stay allowed.
        assert!(validate_file_name("пакет-1.0.tgz").is_ok());
        assert!(validate_file_name("می\u{200C}خواهم.zip").is_ok());
        assert!("NPM".parse::<PackageType>().is_ok() && "rpm".parse::<PackageType>().is_err());
        for t in PackageType::ALL {
            assert_eq!(PackageType::from_u8(t as u8).unwrap(), t);
        }
    }
}
