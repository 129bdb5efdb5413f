//! The bounds of a job definition: every duration, count, text and list has a maximum, checked
//! with the rest of [`JobSpec::validate`], so that an absurd value is refused with the field
//! named instead of overflowing time arithmetic or filling memory at run time.
//!
//! The maxima are generous for real jobs and documented in the README ("Limits").

use std::collections::BTreeMap;

use jiff::SignedDuration;

use super::job::{Action, HttpAction, JobSpec, MisfirePolicy, SpecError, SqlAction};

/// The longest duration anywhere in a job (timeouts, retry delays, grace, windows, jitter,
/// pauses): 30 days.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_hours(30 * 24);
/// The longest SQL `statement_timeout`: a day (PostgreSQL takes no more than ~24.8 days).
pub const MAX_STATEMENT_TIMEOUT: SignedDuration = SignedDuration::from_hours(24);
/// The most attempts a retry policy may make, the first included.
pub const MAX_ATTEMPTS: u32 = 100;
/// The most runs of one job at once.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// The most rows an SQL job keeps with a run.
pub const MAX_KEEP_ROWS: u32 = 1_000;
/// The longest name-like text: a time zone, a tag, a handler, a connection, an HTTP method, the
/// name of a header, a query parameter or a variable.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest ordinary text: the description, the schedule, the pause reason, a URL, a
/// working directory, an HMAC secret, a header's or query parameter's value.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// The largest payload: an HTTP body (text or JSON), the SQL of a job in all, a command's
/// arguments and variables in all.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The most entries in a list or map (tags, `after`, variables, headers, query parameters,
/// kept headers, success statuses, script statements), except a command's arguments.
pub const MAX_ENTRIES: usize = 256;
/// The most arguments of a command, the program included.
pub const MAX_ARGS: usize = 1_024;

/// Checks every bound of `spec`; the first one exceeded is returned with its field.
pub(super) fn check(spec: &JobSpec) -> Result<(), SpecError> {
    // Destructured in full: a field added to a job must be given its bound here.
    let JobSpec {
        name: _,
        description,
        schedule,
        time_zone,
        dst_gap: _,
        dst_fold: _,
        enabled: _,
        pause_reason,
        tags,
        action,
        timeout,
        retry,
        overlap: _,
        misfire,
        misfire_grace,
        jitter,
        after,
        max_concurrency,
    } = spec;
    text("description", description, MAX_TEXT_BYTES)?;
    if let Some(schedule) = schedule {
        text("schedule", schedule, MAX_TEXT_BYTES)?;
    }
    text("time_zone", time_zone, MAX_NAME_BYTES)?;
    if let Some(reason) = pause_reason {
        text("pause_reason", reason, MAX_TEXT_BYTES)?;
    }
    entries("tags", tags.len(), MAX_ENTRIES)?;
    for (i, tag) in tags.iter().enumerate() {
        text(&format!("tags[{i}]"), tag, MAX_NAME_BYTES)?;
    }
    entries("after", after.len(), MAX_ENTRIES)?;
    action_bounds(action)?;
    duration("timeout", *timeout, MAX_DURATION)?;
    duration(
        "retry.initial_delay",
        Some(retry.initial_delay),
        MAX_DURATION,
    )?;
    duration("retry.max_delay", Some(retry.max_delay), MAX_DURATION)?;
    count("retry.max_attempts", retry.max_attempts, MAX_ATTEMPTS)?;
    if let MisfirePolicy::RunAll { window } = misfire {
        duration("misfire.window", Some(*window), MAX_DURATION)?;
    }
    duration("misfire_grace", Some(*misfire_grace), MAX_DURATION)?;
    duration("jitter", *jitter, MAX_DURATION)?;
    count("max_concurrency", *max_concurrency, MAX_CONCURRENCY)?;
    Ok(())
}

fn action_bounds(action: &Action) -> Result<(), SpecError> {
    match action {
        Action::Command {
            argv,
            env,
            cwd,
            inherit_env,
        } => {
            entries("action.argv", argv.len(), MAX_ARGS)?;
            entries("action.env", env.len(), MAX_ENTRIES)?;
            for name in env.keys() {
                key("action.env", name)?;
            }
            entries("action.inherit_env", inherit_env.len(), MAX_ENTRIES)?;
            for (i, name) in inherit_env.iter().enumerate() {
                text(&format!("action.inherit_env[{i}]"), name, MAX_NAME_BYTES)?;
            }
            let total: usize = argv.iter().map(String::len).sum::<usize>()
                + env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
            if total > MAX_PAYLOAD_BYTES {
                return Err(SpecError::new(
                    "action.argv",
                    format!(
                        "the arguments and variables come to {} in all; the most is {}",
                        bytes(total),
                        bytes(MAX_PAYLOAD_BYTES)
                    ),
                ));
            }
            if let Some(cwd) = cwd {
                let cwd = cwd.as_os_str().len();
                if cwd > MAX_TEXT_BYTES {
                    return Err(too_long("action.cwd", cwd, MAX_TEXT_BYTES));
                }
            }
        }
        Action::Rust { handler } => text("action.handler", handler, MAX_NAME_BYTES)?,
        Action::Http(http) => http_bounds(http)?,
        Action::Sql(sql) => sql_bounds(sql)?,
    }
    Ok(())
}

fn http_bounds(http: &HttpAction) -> Result<(), SpecError> {
    let HttpAction {
        method,
        url,
        headers,
        query,
        body,
        json,
        timeout,
        success_status,
        hmac_secret,
        keep_headers,
    } = http;
    text("action.method", method, MAX_NAME_BYTES)?;
    text("action.url", url, MAX_TEXT_BYTES)?;
    pairs("action.headers", headers)?;
    pairs("action.query", query)?;
    if let Some(body) = body {
        text("action.body", body, MAX_PAYLOAD_BYTES)?;
    }
    if let Some(json) = json {
        // The JSON as sent.
        let size = serde_json::to_string(json).map_or(usize::MAX, |s| s.len());
        if size > MAX_PAYLOAD_BYTES {
            return Err(too_long("action.json", size, MAX_PAYLOAD_BYTES));
        }
    }
    duration("action.timeout", *timeout, MAX_DURATION)?;
    entries("action.success_status", success_status.len(), MAX_ENTRIES)?;
    if let Some(secret) = hmac_secret {
        text("action.hmac_secret", secret, MAX_TEXT_BYTES)?;
    }
    entries("action.keep_headers", keep_headers.len(), MAX_ENTRIES)?;
    for (i, name) in keep_headers.iter().enumerate() {
        text(&format!("action.keep_headers[{i}]"), name, MAX_NAME_BYTES)?;
    }
    Ok(())
}

fn sql_bounds(sql: &SqlAction) -> Result<(), SpecError> {
    let SqlAction {
        connection,
        statement,
        script,
        batch: _,
        batch_pause,
        max_batches: _,
        statement_timeout,
        keep_rows,
        fail_when_rows: _,
    } = sql;
    text("action.connection", connection, MAX_NAME_BYTES)?;
    entries("action.script", script.len(), MAX_ENTRIES)?;
    let total =
        statement.as_ref().map_or(0, String::len) + script.iter().map(String::len).sum::<usize>();
    if total > MAX_PAYLOAD_BYTES {
        let field = if statement.is_some() {
            "action.statement"
        } else {
            "action.script"
        };
        return Err(too_long(field, total, MAX_PAYLOAD_BYTES));
    }
    duration("action.batch_pause", *batch_pause, MAX_DURATION)?;
    duration(
        "action.statement_timeout",
        *statement_timeout,
        MAX_STATEMENT_TIMEOUT,
    )?;
    count("action.keep_rows", *keep_rows, MAX_KEEP_ROWS)?;
    Ok(())
}

/// A map of names to values (headers, query parameters): entries, names and values bounded.
fn pairs(field: &str, map: &BTreeMap<String, String>) -> Result<(), SpecError> {
    entries(field, map.len(), MAX_ENTRIES)?;
    for (name, value) in map {
        key(field, name)?;
        text(&format!("{field}.{name}"), value, MAX_TEXT_BYTES)?;
    }
    Ok(())
}

/// A map's key: named by the map, since the key itself may be what is too long to repeat.
fn key(field: &str, name: &str) -> Result<(), SpecError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(SpecError::new(
            field,
            format!(
                "has a name {} long; the most is {}",
                bytes(name.len()),
                bytes(MAX_NAME_BYTES)
            ),
        ));
    }
    Ok(())
}

fn text(field: &str, value: &str, max: usize) -> Result<(), SpecError> {
    if value.len() > max {
        return Err(too_long(field, value.len(), max));
    }
    Ok(())
}

fn too_long(field: &str, len: usize, max: usize) -> SpecError {
    SpecError::new(
        field,
        format!("is {} long; the most is {}", bytes(len), bytes(max)),
    )
}

fn entries(field: &str, len: usize, max: usize) -> Result<(), SpecError> {
    if len > max {
        return Err(SpecError::new(
            field,
            format!("has {len} entries; the most is {max}"),
        ));
    }
    Ok(())
}

fn count(field: &str, value: u32, max: u32) -> Result<(), SpecError> {
    if value > max {
        return Err(SpecError::new(
            field,
            format!("must be at most {max}, got {value}"),
        ));
    }
    Ok(())
}

fn duration(
    field: &str,
    value: Option<SignedDuration>,
    max: SignedDuration,
) -> Result<(), SpecError> {
    match value {
        // `{:#}` writes the form a definition takes: "720h", "1h 30m".
        Some(d) if d > max => Err(SpecError::new(
            field,
            format!("must be at most {max:#}, got {d:#}"),
        )),
        _ => Ok(()),
    }
}

/// A size for a person: `300 bytes`, `12.5 KiB`, `2 MiB`.
fn bytes(n: usize) -> String {
    const KIB: f64 = 1024.0;
    let (value, unit) = match n as f64 {
        n if n < KIB => return format!("{n} bytes"),
        n if n < KIB * KIB => (n / KIB, "KiB"),
        n => (n / KIB / KIB, "MiB"),
    };
    let value = format!("{value:.1}");
    format!("{} {unit}", value.strip_suffix(".0").unwrap_or(&value))
}
