//! `cronwarden next` and `cronwarden explain`: the schedule engine on the command line.

use std::io::Write;

use clap::{Args, ValueEnum};
use cronwarden::schedule::{DstPolicy, FoldPolicy, GapPolicy, Schedule, ScheduleOptions};
use jiff::{tz::TimeZone, Timestamp};

use super::CliError;

/// How fire instants are printed: RFC 3339 with the zone's numeric offset and whole seconds.
pub(super) const INSTANT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%:z";

/// The options every schedule command shares: how to read the expression.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The schedule: a cron expression (5 or 6 fields), an @alias, "@every 90s", or a named form
    /// such as every_5_minutes. Quote it.
    expression: String,
    /// The IANA time zone the expression runs in.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: String,
    /// The key that H fields hash (normally the job's name).
    #[arg(long, value_name = "KEY")]
    hash_key: Option<String>,
    /// The instant @every intervals count from (RFC 3339).
    #[arg(long, value_name = "INSTANT")]
    origin: Option<String>,
    /// What to do with times skipped by a spring-forward change (default: cron's rule).
    #[arg(long, value_enum, value_name = "POLICY")]
    on_gap: Option<GapArg>,
    /// What to do with times repeated by a fall-back change (default: cron's rule).
    #[arg(long, value_enum, value_name = "POLICY")]
    on_fold: Option<FoldArg>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GapArg {
    /// Run once at the first instant after the gap.
    RunAfter,
    /// Do not run.
    Skip,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FoldArg {
    First,
    Second,
    Both,
}

/// Arguments of `cronwarden next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Print fires strictly after this instant (RFC 3339; default: now).
    #[arg(long, value_name = "INSTANT")]
    after: Option<String>,
    /// How many fires to print.
    #[arg(short = 'n', long = "count", value_name = "COUNT", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Print JSON instead of one instant per line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cronwarden explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Describe DST changes after this instant (RFC 3339; default: now).
    #[arg(long, value_name = "INSTANT")]
    after: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn instant(flag: &str, text: &str) -> Result<Timestamp, CliError> {
    text.parse().map_err(|e| {
        CliError(format!(
            "{flag} {text:?} is not an RFC 3339 instant such as 2026-03-29T01:30:00+01:00 ({e})"
        ))
    })
}

impl ScheduleArgs {
    fn parse(&self) -> Result<Schedule, CliError> {
        let tz = TimeZone::get(&self.tz).map_err(|_| {
            CliError(format!(
                "--tz {:?} is not a known IANA time zone, such as Europe/Berlin or UTC",
                self.tz
            ))
        })?;
        let policy = DstPolicy {
            gap: match self.on_gap {
                None => GapPolicy::Cron,
                Some(GapArg::RunAfter) => GapPolicy::RunAfterGap,
                Some(GapArg::Skip) => GapPolicy::Skip,
            },
            fold: match self.on_fold {
                None => FoldPolicy::Cron,
                Some(FoldArg::First) => FoldPolicy::First,
                Some(FoldArg::Second) => FoldPolicy::Second,
                Some(FoldArg::Both) => FoldPolicy::Both,
            },
        };
        let mut options = ScheduleOptions::new().time_zone(tz).dst_policy(policy);
        if let Some(key) = &self.hash_key {
            options = options.hash_key(key);
        }
        if let Some(origin) = &self.origin {
            options = options.origin(instant("--origin", origin)?);
        }
        options
            .parse(&self.expression)
            .map_err(|e| CliError(format!("invalid schedule: {e}")))
    }
}

pub(super) fn write_out(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`cronwarden next ... | head -1`) is not an error worth reporting.
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError(format!("cannot write output: {e}")))
        }
        _ => Ok(()),
    }
}

/// `cronwarden next`.
pub fn next(args: NextArgs) -> Result<(), CliError> {
    let schedule = args.schedule.parse()?;
    let after = match &args.after {
        Some(text) => instant("--after", text)?,
        None => Timestamp::now(),
    };
    let tz = schedule.time_zone().clone();
    let fires: Vec<String> = schedule
        .fires_after(after)
        .take(args.count as usize)
        .map(|t| t.to_zoned(tz.clone()).strftime(INSTANT_FORMAT).to_string())
        .collect();
    let text = if args.json {
        let doc = serde_json::json!({
            "expression": schedule.expression(),
            "time_zone": args.schedule.tz,
            "after": after.to_zoned(tz).strftime(INSTANT_FORMAT).to_string(),
            "fires": fires,
        });
        format!("{doc:#}\n")
    } else {
        fires.iter().map(|f| format!("{f}\n")).collect()
    };
    write_out(&text)
}

/// `cronwarden explain`.
pub fn explain(args: ExplainArgs) -> Result<(), CliError> {
    let schedule = args.schedule.parse()?;
    let after = match &args.after {
        Some(text) => instant("--after", text)?,
        None => Timestamp::now(),
    };
    let explanation = schedule.explain(after);
    let text = if args.json {
        let doc = serde_json::json!({
            "expression": schedule.expression(),
            "time_zone": args.schedule.tz,
            "summary": explanation.summary,
            "dst": explanation.dst_notes,
        });
        format!("{doc:#}\n")
    } else {
        let mut text = format!("{}\n", explanation.summary);
        for note in &explanation.dst_notes {
            text.push_str(&format!("  {note}\n"));
        }
        text
    };
    write_out(&text)
}
