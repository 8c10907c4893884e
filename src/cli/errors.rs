//! How a failed command reads: one line, each cause said once.
//!
//! Libraries often put their cause into their own message *and* return it
//! as the error's source, so printing the chain (`{:#}`) says it twice:
//! `transport error: transport error: tcp connect error: tcp connect error:
//! Connection refused`. [`error_line`] drops a cause the text before it
//! already ends with, and a message that only repeats the one before it.

use crate::api::client::Status;

/// The error and its causes on one line, `: `-joined, nothing repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() {
            continue;
        }
        match parts.last_mut() {
            // Already said: the message before quoted its cause.
            Some(last) if last.ends_with(&text) => {}
            // The cause says all the message said, and more.
            Some(last) if text.starts_with(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

fn one_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join(" ")
}

/// A gRPC status as `Code: message`, on one line, without repeating the
/// code when the message starts with it (`NotFound: blob …`, not
/// `NotFound: not found: blob …`).
pub(super) fn status_line(s: &Status) -> String {
    let code = format!("{:?}", s.code());
    let message = one_line(s.message());
    let spoken = spoken(&code);
    let rest = match message.get(..spoken.len()) {
        Some(head) if head.eq_ignore_ascii_case(&spoken) => message[spoken.len()..].trim_start_matches([':', ' ']),
        _ => &message,
    };
    match rest.is_empty() {
        true => code,
        false => format!("{code}: {rest}"),
    }
}

/// `NotFound` as `not found`.
fn spoken(code: &str) -> String {
    let mut out = String::new();
    for c in code.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn chain(texts: &[&'static str]) -> Layer {
        let mut l: Option<Box<Layer>> = None;
        for t in texts.iter().rev() {
            l = Some(Box::new(Layer(t, l)));
        }
        *l.unwrap()
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = anyhow::Error::new(chain(&[
            "transport error",
            "transport error",
            "tcp connect error: Connection refused",
            "Connection refused",
        ]))
        .context("cannot connect to http://127.0.0.1:1");
        assert_eq!(
            error_line(&e),
            "cannot connect to http://127.0.0.1:1: transport error: tcp connect error: Connection refused"
        );
        let e = anyhow::Error::new(chain(&[
            "invalid URL, scheme is missing",
            "invalid URL, scheme is missing",
        ]));
        assert_eq!(error_line(&e), "invalid URL, scheme is missing");
        let e = anyhow::Error::new(chain(&[
            "client error (Connect)",
            "tcp connect error",
            "tcp connect error: refused",
        ]));
        assert_eq!(error_line(&e), "client error (Connect): tcp connect error: refused");
    }

    #[test]
    fn a_status_names_its_code_once() {
        let s = Status::not_found("not found: blob ab");
        assert_eq!(status_line(&s), "NotFound: blob ab");
        let s = Status::invalid_argument("invalid argument: bad\nname");
        assert_eq!(status_line(&s), "InvalidArgument: bad name");
        let s = Status::resource_exhausted("disk full: /x");
        assert_eq!(status_line(&s), "ResourceExhausted: disk full: /x");
        assert_eq!(status_line(&Status::unavailable("")), "Unavailable");
    }
}
