//! Secret references in job definitions: `${env:NAME}` and `${file:PATH}`.
//!
//! A job or connection keeps the reference, never the value: the store, the API and the logs
//! only ever see `${env:API_TOKEN}`. The value is read when a run starts (so a rotated secret
//! is picked up without a restart) and every value read is then cut out of what the run leaves
//! behind — its output and its error — before that reaches the history or a log line.
//!
//! Only those two forms are references; any other `${...}` is left as written, so SQL or shell
//! text that uses the same characters is not disturbed.

use std::fmt;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// A reference whose value could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretError {
    /// The field the reference is in.
    pub field: String,
    /// Why it could not be resolved.
    pub reason: String,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for SecretError {}

/// The values of the secrets a run resolved, to cut out of what it leaves behind.
///
/// Every occurrence of every value is cut out, overlapping ones too: a run of text covered by
/// occurrences becomes one [`REDACTED`]. A stream (a command's output, a response body) is
/// redacted as it is read, with [`Redactor::stream`], before any of it is cut to a limit, so
/// that a limit falling inside a secret cannot leave part of it behind.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    values: Vec<String>,
    /// Finds every value; rebuilt when one is added. `None` while there are none.
    matcher: Option<std::sync::Arc<aho_corasick::AhoCorasick>>,
}

impl Redactor {
    /// Adds a value to cut out. Empty values are ignored (they would match everywhere).
    pub fn add(&mut self, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            // Standard matching, so that overlapping occurrences are all found.
            self.matcher = Some(std::sync::Arc::new(
                aho_corasick::AhoCorasick::new(&self.values)
                    .expect("a handful of secret values fits the automaton's limits"),
            ));
        }
    }

    /// Adds every value of `other`.
    pub fn extend(&mut self, other: &Redactor) {
        for value in &other.values {
            self.add(value);
        }
    }

    /// Whether there is nothing to cut out.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        let mut out = Vec::with_capacity(text.len());
        let mut stream = self.stream();
        stream.push(text.as_bytes(), &mut out);
        stream.finish(&mut out);
        // Occurrences of UTF-8 values in UTF-8 text begin and end on character boundaries.
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// Redacts in place.
    pub fn redact_in_place(&self, text: &mut String) {
        if !self.is_empty() {
            *text = self.redact(text);
        }
    }

    /// A redactor of a stream of bytes, fed in pieces.
    pub fn stream(&self) -> RedactingStream {
        RedactingStream {
            matcher: self.matcher.clone(),
            // A value that begins before this many bytes from the end is wholly in the
            // buffer: only bytes before that point can be decided.
            overlap: self.values.iter().map(String::len).max().unwrap_or(1) - 1,
            pending: Vec::new(),
            covered: 0,
            open: false,
        }
    }
}

/// Redacts a stream as it comes ([`Redactor::stream`]): [`push`](RedactingStream::push) hands
/// on every byte that no secret can still begin at, redacted, and keeps the rest (fewer than
/// the longest secret's length) until more comes or [`finish`](RedactingStream::finish).
/// Whatever has been handed on holds no part of a secret, so it may be cut anywhere.
pub struct RedactingStream {
    matcher: Option<std::sync::Arc<aho_corasick::AhoCorasick>>,
    overlap: usize,
    /// Bytes not yet decided.
    pending: Vec<u8>,
    /// How many bytes at the start of `pending` belong to a secret that began in bytes already
    /// handed on.
    covered: usize,
    /// Whether the last byte handed on was part of a secret (so that one secret cut across two
    /// pieces gives one [`REDACTED`], not two).
    open: bool,
}

impl RedactingStream {
    /// Takes in `bytes`, and appends to `out` what is decided, redacted.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.matcher.is_none() {
            out.extend_from_slice(bytes);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let decided = self.pending.len().saturating_sub(self.overlap);
        self.hand_on(decided, out);
    }

    /// The stream has ended: appends the rest to `out`, redacted.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let all = self.pending.len();
        self.hand_on(all, out);
    }

    /// Hands on the first `decided` bytes of `pending`: every occurrence that begins among
    /// them lies wholly in `pending`.
    fn hand_on(&mut self, decided: usize, out: &mut Vec<u8>) {
        let Some(matcher) = &self.matcher else {
            return;
        };
        if decided == 0 {
            return;
        }
        // The runs of bytes covered by a secret, in order, merged where they touch.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        if self.covered > 0 {
            runs.push((0, self.covered));
        }
        let mut found: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(&self.pending[..])
            .filter(|m| m.start() < decided)
            .map(|m| (m.start(), m.end()))
            .collect();
        found.sort_unstable();
        for (start, end) in found {
            match runs.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => runs.push((start, end)),
            }
        }
        let mut at = 0;
        let mut covered_after = 0;
        for (start, end) in runs {
            if start > at {
                out.extend_from_slice(&self.pending[at..start]);
                self.open = false;
            }
            if !(self.open && start == 0) {
                out.extend_from_slice(REDACTED.as_bytes());
            }
            self.open = true;
            at = end.min(decided);
            covered_after = end.saturating_sub(decided);
        }
        if at < decided {
            out.extend_from_slice(&self.pending[at..decided]);
            self.open = false;
        }
        self.pending.drain(..decided);
        self.covered = covered_after;
    }
}

enum Piece<'a> {
    Text(&'a str),
    Env(&'a str),
    File(&'a str),
}

/// Splits `s` into literal text and references; `Err` for a reference that is not closed or
/// names nothing.
fn pieces(mut s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    loop {
        let next = [("${env:", true), ("${file:", false)]
            .into_iter()
            .filter_map(|(open, env)| s.find(open).map(|at| (at, open, env)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, open, env)) = next else {
            if !s.is_empty() {
                out.push(Piece::Text(s));
            }
            return Ok(out);
        };
        if at > 0 {
            out.push(Piece::Text(&s[..at]));
        }
        let rest = &s[at + open.len()..];
        let Some(end) = rest.find('}') else {
            return Err(format!("{open}... is not closed with }}"));
        };
        let name = &rest[..end];
        if name.is_empty() {
            return Err(format!("{open}}} names nothing"));
        }
        out.push(if env {
            Piece::Env(name)
        } else {
            Piece::File(name)
        });
        s = &rest[end + 1..];
    }
}

/// Checks the references in `s` without reading them (for validation).
pub fn check_references(s: &str) -> Result<(), String> {
    pieces(s).map(drop)
}

/// Checks the references in a job's string: as [`check_references`], and none may name one of
/// the daemon's own `CRONWARDEN_*` variables (its admin token, its database URL), which never
/// reach a job.
pub fn check_job_references(s: &str) -> Result<(), String> {
    for piece in pieces(s)? {
        if let Piece::Env(name) = piece {
            if crate::executor::is_daemon_variable(name) {
                return Err(format!(
                    "${{env:{name}}}: variables named CRONWARDEN_* are the daemon's own \
                     settings and never reach a job"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `s` holds a reference.
pub fn has_references(s: &str) -> bool {
    s.contains("${env:") || s.contains("${file:")
}

/// `s` with its references replaced by their values, which are added to `redactor`.
pub fn resolve(s: &str, redactor: &mut Redactor) -> Result<String, String> {
    if !has_references(s) {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    for piece in pieces(s)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Env(name) => {
                let value = std::env::var(name).map_err(|e| match e {
                    std::env::VarError::NotPresent => {
                        format!("${{env:{name}}}: the environment variable is not set")
                    }
                    std::env::VarError::NotUnicode(_) => {
                        format!("${{env:{name}}}: the environment variable is not valid UTF-8")
                    }
                })?;
                redactor.add(&value);
                out.push_str(&value);
            }
            Piece::File(path) => {
                let value = std::fs::read_to_string(path)
                    .map_err(|e| format!("${{file:{path}}}: cannot read the file: {e}"))?;
                // Secret files (Docker, Kubernetes) usually end in a newline that is not part
                // of the secret.
                let value = value.strip_suffix('\n').unwrap_or(&value);
                let value = value.strip_suffix('\r').unwrap_or(value);
                redactor.add(value);
                out.push_str(value);
            }
        }
    }
    Ok(out)
}

/// A copy of `action` with every reference resolved, and the values to redact.
pub fn resolve_action(
    action: &crate::model::Action,
) -> Result<(crate::model::Action, Redactor), SecretError> {
    let mut resolved = action.clone();
    let mut redactor = Redactor::default();
    for (field, value) in resolved.strings_mut() {
        if has_references(value) {
            // Also for a job stored before this was checked.
            check_job_references(value).map_err(|reason| SecretError {
                field: field.clone(),
                reason,
            })?;
            *value = resolve(value, &mut redactor).map_err(|reason| SecretError {
                field: field.clone(),
                reason,
            })?;
        }
    }
    Ok((resolved, redactor))
}

/// Whether a header, query parameter or variable of this name usually holds a credential.
fn sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "secret",
        "password",
        "passwd",
        "key",
        "cookie",
        "signature",
        "credential",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// A value to hide when shown: a literal (not a reference, whose value is not in the
/// definition) under a name that suggests a credential.
fn hide(value: &mut String) {
    if !has_references(value) && !value.is_empty() {
        *value = REDACTED.to_owned();
    }
}

/// The password of a URL's user information, if any, replaced.
fn hide_url_password(url: &mut String) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return;
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return;
    };
    if password.is_empty() || has_references(password) {
        return;
    }
    *url = format!(
        "{scheme}://{user}:{REDACTED}@{host}{}",
        &rest[authority_end..]
    );
}

/// A job's action as it may be shown (API responses, the audit log, the CLI): credentials
/// written into the definition as literals, rather than as `${env:...}` or `${file:...}`
/// references, are replaced by [`REDACTED`]. References are shown: they name where the secret
/// is, not what it is.
pub fn redact_action(action: &crate::model::Action) -> crate::model::Action {
    use crate::model::Action;
    let mut shown = action.clone();
    match &mut shown {
        Action::Command { env, .. } => {
            for (name, value) in env.iter_mut() {
                if sensitive_name(name) {
                    hide(value);
                }
            }
        }
        Action::Http(http) => {
            hide_url_password(&mut http.url);
            for (name, value) in http.headers.iter_mut().chain(http.query.iter_mut()) {
                if sensitive_name(name) {
                    hide(value);
                }
            }
            if let Some(secret) = &mut http.hmac_secret {
                hide(secret);
            }
        }
        Action::Rust { .. } | Action::Sql(_) => {}
    }
    shown
}

/// Puts back, into a definition sent by a client, the credentials it received redacted: a
/// field whose value is exactly what [`redact_action`] showed for the stored definition gets
/// the stored value, so that reading a job and writing it back does not store `[redacted]`.
pub fn restore_redacted(incoming: &mut crate::model::Action, stored: &crate::model::Action) {
    let mut stored = stored.clone();
    let mut shown = redact_action(&stored);
    let shown: std::collections::HashMap<String, String> = shown
        .strings_mut()
        .into_iter()
        .map(|(field, value)| (field, value.clone()))
        .collect();
    let stored: std::collections::HashMap<String, String> = stored
        .strings_mut()
        .into_iter()
        .map(|(field, value)| (field, value.clone()))
        .collect();
    for (field, value) in incoming.strings_mut() {
        if !value.contains(REDACTED) {
            continue;
        }
        if let (Some(shown), Some(original)) = (shown.get(&field), stored.get(&field)) {
            if shown == value {
                *value = original.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_resolved_and_redacted() {
        std::env::set_var("CRONWARDEN_TEST_SECRET_A", "s3cr3t-value");
        let mut redactor = Redactor::default();
        let text = resolve(
            "Bearer ${env:CRONWARDEN_TEST_SECRET_A} and ${other} $${x}",
            &mut redactor,
        )
        .unwrap();
        assert_eq!(text, "Bearer s3cr3t-value and ${other} $${x}");
        assert_eq!(
            redactor.redact("got s3cr3t-value twice: s3cr3t-value"),
            "got [redacted] twice: [redacted]"
        );
    }

    #[test]
    fn file_references_drop_the_final_newline() {
        let dir = cronwarden_test_support::TestDir::new("secret");
        let path = dir.join("token");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let mut redactor = Redactor::default();
        let text = resolve(&format!("x=${{file:{}}}", path.display()), &mut redactor).unwrap();
        assert_eq!(text, "x=from-a-file");
        assert_eq!(redactor.redact("from-a-file\n"), "[redacted]\n");
    }

    #[test]
    fn bad_references_are_named() {
        let mut redactor = Redactor::default();
        let missing = resolve("${env:CRONWARDEN_TEST_UNSET_VAR}", &mut redactor).unwrap_err();
        assert!(missing.contains("CRONWARDEN_TEST_UNSET_VAR"), "{missing}");
        assert!(missing.contains("not set"), "{missing}");
        assert!(check_references("${env:OPEN").is_err());
        assert!(check_references("${file:}").is_err());
        assert!(check_references("plain ${shell} text").is_ok());
    }

    #[test]
    fn literal_credentials_are_hidden_in_definitions_and_restored_on_write_back() {
        use crate::model::{Action, HttpAction};
        let mut http: HttpAction = serde_json::from_value(serde_json::json!({
            "url": "https://sync:hunter2@org.example/api?x=1",
            "headers": {"Authorization": "Bearer abc123", "X-Api-Key": "${env:ORG_KEY}", "Accept": "application/json"},
            "query": {"access_token": "qs-secret", "page": "1"},
            "hmac_secret": "shared-literal",
        }))
        .unwrap();
        let stored = Action::Http(http.clone());
        let Action::Http(shown) = redact_action(&stored) else {
            unreachable!()
        };
        assert_eq!(shown.url, "https://sync:[redacted]@org.example/api?x=1");
        assert_eq!(shown.headers["Authorization"], "[redacted]");
        assert_eq!(
            shown.headers["X-Api-Key"], "${env:ORG_KEY}",
            "a reference is shown"
        );
        assert_eq!(shown.headers["Accept"], "application/json");
        assert_eq!(shown.query["access_token"], "[redacted]");
        assert_eq!(shown.query["page"], "1");
        assert_eq!(shown.hmac_secret.as_deref(), Some("[redacted]"));

        // Written back as read, with one real change: the credentials are kept.
        let mut incoming = Action::Http(HttpAction {
            timeout: Some(jiff::SignedDuration::from_secs(5)),
            ..shown.clone()
        });
        restore_redacted(&mut incoming, &stored);
        http.timeout = Some(jiff::SignedDuration::from_secs(5));
        assert_eq!(incoming, Action::Http(http));

        let env = Action::Command {
            argv: vec!["backup".into()],
            env: [
                ("PGPASSWORD".to_owned(), "pw".to_owned()),
                ("MODE".to_owned(), "full".to_owned()),
            ]
            .into(),
            inherit_env: Vec::new(),
            cwd: None,
        };
        let Action::Command { env, .. } = redact_action(&env) else {
            unreachable!()
        };
        assert_eq!(env["PGPASSWORD"], "[redacted]");
        assert_eq!(env["MODE"], "full");
    }

    #[test]
    fn the_longest_secret_is_cut_out_first() {
        let mut redactor = Redactor::default();
        redactor.add("abc");
        redactor.add("abcdef");
        assert_eq!(redactor.redact("xabcdefx abc"), "x[redacted]x [redacted]");
    }

    /// `text` redacted as a stream fed in pieces of `size` bytes.
    fn redact_in_pieces(redactor: &Redactor, text: &str, size: usize) -> String {
        let mut out = Vec::new();
        let mut stream = redactor.stream();
        for piece in text.as_bytes().chunks(size) {
            stream.push(piece, &mut out);
        }
        stream.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_stream_is_redacted_alike_however_it_is_cut_into_pieces() {
        let secret = "S3cr3t-0123456789-abcdefghij-XYZ";
        assert_eq!(secret.len(), 32);
        let mut redactor = Redactor::default();
        redactor.add(secret);
        redactor.add("abab");
        for at in 0..40 {
            let text = format!("{}{secret}{}ababab.", "-".repeat(at), "+".repeat(at % 7));
            let whole = redactor.redact(&text);
            assert!(!whole.contains("S3cr") && !whole.contains("ab"), "{whole}");
            for size in 1..=40 {
                let streamed = redact_in_pieces(&redactor, &text, size);
                assert_eq!(streamed, whole, "at {at}, pieces of {size}");
            }
        }
        // Overlapping occurrences are cut out whole, as one.
        assert_eq!(redactor.redact("xabababx"), "x[redacted]x");
    }

    #[test]
    fn what_a_stream_hands_on_holds_no_part_of_a_secret() {
        let secret = "S3cr3t-0123456789-abcdefghij-XYZ";
        let mut redactor = Redactor::default();
        redactor.add(secret);
        let mut stream = redactor.stream();
        let mut out = Vec::new();
        // The stream stops inside the secret: what has been handed on so far stops before it
        // (and holds back as much as a secret could still need).
        stream.push(
            format!("{}{}", "-".repeat(100), &secret[..20]).as_bytes(),
            &mut out,
        );
        assert_eq!(out, "-".repeat(120 - 31).as_bytes());
        stream.push(&secret.as_bytes()[20..], &mut out);
        stream.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}[redacted]", "-".repeat(100))
        );
    }
}
