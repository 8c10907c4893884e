//! Refusals shared by the pre-upload check (`read::precheck_publish`) and
//! the commit (`apply`), so both say the same thing: duplicate files, deleted
//! targets, and the duplicate-exception regex.

use regex::Regex;

use super::model::{PkgRef, VerRef};
use crate::error::{Error, Result};

/// Longest duplicate-exception regex accepted.
const MAX_REGEX: usize = 1024;

/// Compiles an exception regex to match whole file names.
pub fn compile(re: &str) -> Result<Regex> {
    if re.len() > MAX_REGEX {
        return Err(Error::invalid(format!(
            "exception_regex is longer than {MAX_REGEX} bytes"
        )));
    }
    let build = |pattern: &str| regex::RegexBuilder::new(pattern).size_limit(1 << 20).build();
    build(&format!("^(?:{re})$")).map_err(|_| {
        // Report the error against what the caller wrote, on one line.
        let why = build(re).err().map(|e| e.to_string()).unwrap_or_default();
        let why: Vec<&str> = why.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        Error::invalid(format!(
            "exception_regex {re:?} is not a valid regex: {}",
            why.join(" ")
        ))
    })
}

pub fn duplicate_error(v: &VerRef, file_name: &str) -> Error {
    Error::AlreadyExists(format!(
        "file {file_name:?} already exists in version {:?} of {}, and the namespace's {} duplicate policy forbids duplicates",
        v.version,
        describe(&v.pkg),
        v.pkg.ty
    ))
}

/// Publishing into a deleted package (or version) is refused.
pub fn deleted_error(v: &VerRef, package: bool) -> Error {
    Error::FailedPrecondition(match package {
        true => format!("{} is deleted; restore it before publishing to it", describe(&v.pkg)),
        false => format!(
            "version {:?} of {} is deleted; restore it before publishing to it",
            v.version,
            describe(&v.pkg)
        ),
    })
}

pub(super) fn describe(p: &PkgRef) -> String {
    format!("{} package {:?} in {}/{}", p.ty, p.name, p.namespace, p.project)
}
