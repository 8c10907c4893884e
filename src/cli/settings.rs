//! Every config field as a flag and an environment variable, generated
//! from one table: the fields of [`Config::default`] as TOML (plus the
//! few that default to nothing, [`OPTIONAL`]). `gc.interval` is
//! `--gc-interval` and `STOWAGE_GC_INTERVAL`; the `[tls]` section is
//! `--server-tls-…` (`STOWAGE_TLS_*` are the client's). A flag beats its
//! variable, which beats the config file, which beats the default. Maps
//! (`quotas`, `pack_store_options`) take `KEY=VALUE` pairs; `tokens` stay
//! in the config file.

use std::sync::OnceLock;

use anyhow::{Context, bail};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use toml::{Table, Value};

use crate::config::Config;

/// Fields whose default is none, so [`Config::default`] does not show them.
const OPTIONAL: &[(&str, Kind)] = &[
    ("pack_store", Kind::Str),
    ("metrics_listen", Kind::Str),
    ("tls.cert", Kind::Str),
    ("tls.key", Kind::Str),
    ("tls.client_ca", Kind::Str),
    ("tls.client_auth_optional", Kind::Bool),
];

/// Tables that are maps from names to values, not sections.
const MAPS: &[&str] = &["pack_store_options", "quotas"];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Int,
    Float,
    Bool,
    Str,
    Map,
}

/// One config field's flag and variable.
struct Field {
    /// Dotted TOML key, e.g. `gc.interval`.
    key: String,
    /// Flag name without `--` (also the clap id).
    flag: &'static str,
    env: &'static str,
    kind: Kind,
}

fn fields() -> &'static [Field] {
    static FIELDS: OnceLock<Vec<Field>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut out = Vec::new();
        if let Ok(Value::Table(t)) = Value::try_from(Config::default()) {
            walk("", &t, &mut out);
        }
        for (key, kind) in OPTIONAL {
            out.push(field(key, *kind));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    })
}

fn walk(prefix: &str, t: &Table, out: &mut Vec<Field>) {
    for (k, v) in t {
        let key = format!("{prefix}{k}");
        let kind = match v {
            _ if MAPS.contains(&key.as_str()) => Kind::Map,
            Value::Table(inner) => {
                walk(&format!("{key}."), inner, out);
                continue;
            }
            // `tokens`: tables of their own, only in the config file.
            Value::Array(_) => continue,
            Value::Integer(_) => Kind::Int,
            Value::Float(_) => Kind::Float,
            Value::Boolean(_) => Kind::Bool,
            Value::String(_) | Value::Datetime(_) => Kind::Str,
        };
        out.push(field(&key, kind));
    }
}

fn field(key: &str, kind: Kind) -> Field {
    let dashed = key.replace(['.', '_'], "-");
    let flag = match dashed.strip_prefix("tls-") {
        Some(rest) => format!("server-tls-{rest}"),
        None => dashed,
    };
    let env = format!("STOWAGE_{}", flag.replace('-', "_").to_ascii_uppercase());
    // Built once per process: the leak is the table's lifetime.
    Field {
        key: key.to_string(),
        flag: Box::leak(flag.into_boxed_str()),
        env: Box::leak(env.into_boxed_str()),
        kind,
    }
}

/// The flags and variables given for config fields (raw, checked by [`load`]).
#[derive(Clone, Default)]
pub struct Overrides(Vec<(usize, Vec<String>)>);

impl Args for Overrides {
    fn augment_args(mut cmd: Command) -> Command {
        let defaults = Value::try_from(Config::default()).ok();
        for f in fields() {
            let default = defaults.as_ref().and_then(|d| lookup(d, &f.key)).map(shown);
            let help = match default {
                Some(d) if !d.is_empty() => format!("Config `{}` [default: {d}]", f.key),
                _ => format!("Config `{}`", f.key),
            };
            let mut arg = Arg::new(f.flag)
                .long(f.flag)
                .env(f.env)
                .help(help)
                .help_heading("Config fields (flag, then environment, then --config file)");
            arg = match f.kind {
                Kind::Map => arg
                    .value_name("KEY=VALUE")
                    .action(ArgAction::Append)
                    .value_delimiter(','),
                Kind::Bool => arg.value_name("BOOL").action(ArgAction::Set),
                _ => arg.value_name("VALUE").action(ArgAction::Set),
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut out = Overrides::default();
        out.update_from_arg_matches(m)?;
        Ok(out)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for (i, f) in fields().iter().enumerate() {
            if let Some(v) = m.get_many::<String>(f.flag) {
                self.0.retain(|(j, _)| *j != i);
                self.0.push((i, v.cloned().collect()));
            }
        }
        Ok(())
    }
}

fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// A default as the help shows it.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Table(t) if t.is_empty() => String::new(),
        v => v.to_string(),
    }
}

fn set(t: &mut Table, key: &str, v: Value) {
    match key.split_once('.') {
        Some((head, rest)) => {
            let inner = t.entry(head).or_insert_with(|| Value::Table(Table::new()));
            if !inner.is_table() {
                *inner = Value::Table(Table::new());
            }
            if let Value::Table(inner) = inner {
                set(inner, rest, v);
            }
        }
        None => {
            t.insert(key.to_string(), v);
        }
    }
}

fn typed(f: &Field, raw: &[String]) -> anyhow::Result<Value> {
    let one = || raw.last().map(String::as_str).unwrap_or_default();
    Ok(match f.kind {
        Kind::Int => Value::Integer(
            one()
                .trim()
                .parse()
                .with_context(|| format!("{:?} is not an integer", one()))?,
        ),
        Kind::Float => Value::Float(
            one()
                .trim()
                .parse()
                .with_context(|| format!("{:?} is not a number", one()))?,
        ),
        Kind::Bool => Value::Boolean(
            one()
                .trim()
                .parse()
                .with_context(|| format!("{:?} is not true or false", one()))?,
        ),
        Kind::Str => Value::String(one().to_string()),
        Kind::Map => {
            let mut m = Table::new();
            for pair in raw.iter().filter(|p| !p.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    bail!("{pair:?} is not KEY=VALUE");
                };
                m.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
            Value::Table(m)
        }
    })
}

/// The config file's table (empty without one) with the flags and
/// variables applied, each checked on its own so an error names it.
fn merged(config: Option<&std::path::Path>, set_by: &Overrides) -> anyhow::Result<Table> {
    let mut table = Config::load_table(config)?;
    for (i, raw) in &set_by.0 {
        let f = &fields()[*i];
        let what = || format!("--{} (or {})", f.flag, f.env);
        let v = typed(f, raw).with_context(what)?;
        let mut alone = Table::new();
        set(&mut alone, &f.key, v.clone());
        // [tls] needs its cert and key together: checked with the rest.
        if !f.key.starts_with("tls.") {
            Config::from_table(alone).with_context(what)?;
        }
        set(&mut table, &f.key, v);
    }
    Ok(table)
}

/// The daemon's config: defaults, then the file, then variables, then flags.
pub fn load(config: Option<&std::path::Path>, set_by: &Overrides) -> anyhow::Result<Config> {
    let cfg = Config::from_table(merged(config, set_by)?)?;
    cfg.validate()?;
    Ok(cfg)
}

/// The effective config as TOML: every field, set or defaulted, secrets
/// of the pack store's options masked.
pub fn effective(config: Option<&std::path::Path>, set_by: &Overrides) -> anyhow::Result<String> {
    load(config, set_by)?;
    let mut all = match Value::try_from(Config::default())? {
        Value::Table(t) => t,
        _ => Table::new(),
    };
    deep_merge(&mut all, merged(config, set_by)?);
    if let Some(Value::Table(opts)) = all.get_mut("pack_store_options") {
        for (k, v) in opts.iter_mut() {
            let k = k.to_ascii_lowercase();
            if ["secret", "password", "token", "key_id", "access_key"]
                .iter()
                .any(|s| k.contains(s))
            {
                *v = Value::String("<hidden>".into());
            }
        }
    }
    Ok(toml::to_string(&all)?)
}

fn deep_merge(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) if !MAPS.contains(&k.as_str()) => deep_merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_flag_and_a_variable() {
        let names: Vec<(&str, &str)> = fields().iter().map(|f| (f.flag, f.env)).collect();
        for want in [
            ("gc-interval", "STOWAGE_GC_INTERVAL"),
            ("data-dir", "STOWAGE_DATA_DIR"),
            ("listen", "STOWAGE_LISTEN"),
            ("retention-sweep-rate", "STOWAGE_RETENTION_SWEEP_RATE"),
            ("chunking-avg-size", "STOWAGE_CHUNKING_AVG_SIZE"),
            ("scrub-enabled", "STOWAGE_SCRUB_ENABLED"),
            ("quotas", "STOWAGE_QUOTAS"),
            ("pack-store", "STOWAGE_PACK_STORE"),
            ("server-tls-cert", "STOWAGE_SERVER_TLS_CERT"),
        ] {
            assert!(names.contains(&want), "{want:?} missing from {names:?}");
        }
        // Every field of the default config, sections walked.
        let Value::Table(t) = Value::try_from(Config::default()).unwrap() else {
            panic!()
        };
        let leaves = t
            .values()
            .map(|v| match v {
                Value::Table(s) if !s.is_empty() => s.len(),
                Value::Array(_) => 0,
                _ => 1,
            })
            .sum::<usize>();
        assert_eq!(fields().len(), leaves + OPTIONAL.len());
    }

    #[test]
    fn flags_override_the_file_and_are_checked_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "zstd_level = 5\n[gc]\ninterval = \"2h\"\ngrace = \"3h\"\n").unwrap();
        let idx = |flag: &str| fields().iter().position(|f| f.flag == flag).unwrap();
        let o = Overrides(vec![
            (idx("gc-interval"), vec!["10m".into()]),
            (idx("quotas"), vec!["acme=1GiB".into(), "b=2MiB".into()]),
            (idx("retention-sweep-rate"), vec!["7".into()]),
        ]);
        let c = load(Some(&file), &o).unwrap();
        assert_eq!(c.gc.interval, std::time::Duration::from_secs(600));
        assert_eq!(c.gc.grace, std::time::Duration::from_secs(3 * 3600));
        assert_eq!(c.zstd_level, 5);
        assert_eq!(c.retention.sweep_rate, 7);
        assert_eq!(c.quotas["acme"].as_u64(), 1 << 30);
        let bad = Overrides(vec![(idx("gc-interval"), vec!["soon".into()])]);
        let e = format!("{:#}", load(Some(&file), &bad).unwrap_err());
        assert!(e.contains("--gc-interval") && e.contains("STOWAGE_GC_INTERVAL"), "{e}");
        let text = effective(Some(&file), &o).unwrap();
        assert!(text.contains("interval = \"10m\""), "{text}");
        assert!(text.contains("zstd_level = 5"), "{text}");
        let _: Config = toml::from_str(&text).unwrap();
    }
}
