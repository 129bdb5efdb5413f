//! Failed authentications, per client address: limited (a token bucket, then 429 with
//! `Retry-After`), and reported (a WARN line and an `auth.failure` audit entry) at a bounded
//! rate, so that a flood of bad tokens can neither fill the log and the audit log nor go
//! unrecorded.
//!
//! A request with a valid token is never limited, from any address: behind a reverse proxy
//! every client shares the proxy's address, and a flood must not lock the operators out.
//! The address is the TCP peer's; `X-Forwarded-For` is not honoured (anyone can write it).
//! What is tracked is bounded: at most [`MAX_CLIENTS`] addresses (IPv6 by /64, what one host
//! is usually given), the least recently seen forgotten first.

use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;

/// Failed authentications an address may make at once before it is answered 429. Generous
/// (the sustained rate is what limits guessing): a client that probes every route once with a
/// bad token, as the API fuzzing in CI does, stays under it.
pub const FAILURE_BURST: f64 = 60.0;
/// How fast an address earns them back: 10 a minute.
pub const FAILURES_PER_SECOND: f64 = 10.0 / 60.0;
/// How often one address's failures are reported (logged and audited), at most.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Reports across all addresses per [`REPORT_EVERY`], at most; the rest are summed up into
/// one report of "other addresses".
pub const MAX_REPORTS: u32 = 100;
/// Addresses tracked at most.
pub const MAX_CLIENTS: usize = 10_000;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// A token that is unknown or revoked.
    Unknown,
}

/// A client as the limiter knows it: an IPv4 address, an IPv6 /64, or unknown (no peer address,
/// as when the app is served without connection info).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// An IPv4 address (IPv4-mapped IPv6 included).
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
    /// No peer address.
    Unknown,
}

impl Client {
    /// The client at `ip`.
    pub fn of(ip: Option<IpAddr>) -> Client {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Client::V4(v4),
            Some(IpAddr::V6(v6)) => Client::V6((v6.to_bits() >> 64) as u64),
            None => Client::Unknown,
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::V4(v4) => write!(f, "{v4}"),
            Client::V6(prefix) => {
                let net = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "{net}/64")
            }
            Client::Unknown => f.write_str("unknown"),
        }
    }
}

/// Failures not reported yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Failed authentications.
    pub failures: u64,
    /// Of which answered 429.
    pub limited: u64,
    /// Of which with a malformed `Authorization` header.
    pub malformed: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.failures += other.failures;
        self.limited += other.limited;
        self.malformed += other.malformed;
    }
}

/// What to log and audit: failures from one address (or, for `others`, from that many
/// addresses) since its last report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The address, or `None` for the sum over other addresses.
    pub client: Option<Client>,
    /// How many addresses the counts are from.
    pub addresses: u64,
    /// The failures.
    pub counts: Counts,
}

/// What became of one failure.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    /// `Some(seconds)`: answer 429 with this `Retry-After`; `None`: answer 401.
    pub retry_after: Option<u64>,
    /// A report due now.
    pub report: Option<Report>,
}

struct Tracked {
    /// Failures allowed now, earned back at [`FAILURES_PER_SECOND`] up to [`FAILURE_BURST`].
    allowance: f64,
    updated: Instant,
    reported: Option<Instant>,
    pending: Counts,
}

struct State {
    clients: LruCache<Client, Tracked>,
    /// Counts of addresses forgotten before they were reported.
    forgotten: Counts,
    forgotten_addresses: u64,
    /// Reports made in the current window, which started at `window`.
    window: Option<Instant>,
    reports: u32,
}

/// The failed authentications of the API's clients.
pub struct AuthFailures {
    state: Mutex<State>,
    max_clients: usize,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures::tracking(MAX_CLIENTS)
    }
}

impl AuthFailures {
    /// A limiter that tracks at most `max_clients` addresses.
    pub fn tracking(max_clients: usize) -> AuthFailures {
        AuthFailures {
            state: Mutex::new(State {
                clients: LruCache::new_unbounded(),
                forgotten: Counts::default(),
                forgotten_addresses: 0,
                window: None,
                reports: 0,
            }),
            max_clients,
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.state.lock().unwrap().clients.len()
    }

    /// Counts a failure from `client` at `now`: whether it is answered 429, and whether it is
    /// reported now (the first from an address in a while is, within the global bound).
    pub fn failed(&self, client: Client, failure: Failure, now: Instant) -> Verdict {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        if !state.clients.contains_key(&client) {
            while state.clients.len() >= self.max_clients {
                let Some((_, gone)) = state.clients.remove_lru() else {
                    break;
                };
                if gone.pending.failures > 0 {
                    state.forgotten.add(gone.pending);
                    state.forgotten_addresses += 1;
                }
            }
            state.clients.insert(
                client,
                Tracked {
                    allowance: FAILURE_BURST,
                    updated: now,
                    reported: None,
                    pending: Counts::default(),
                },
            );
        }
        let tracked = state.clients.get_mut(&client).expect("inserted above");
        let earned =
            now.saturating_duration_since(tracked.updated).as_secs_f64() * FAILURES_PER_SECOND;
        tracked.allowance = (tracked.allowance + earned).min(FAILURE_BURST);
        tracked.updated = now;
        let retry_after = if tracked.allowance >= 1.0 {
            tracked.allowance -= 1.0;
            None
        } else {
            let wait = (1.0 - tracked.allowance) / FAILURES_PER_SECOND;
            Some((wait.ceil() as u64).max(1))
        };
        tracked.pending.add(Counts {
            failures: 1,
            limited: u64::from(retry_after.is_some()),
            malformed: u64::from(failure == Failure::Malformed),
        });
        let due = tracked
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        let report = if due && take_report_slot(&mut state.window, &mut state.reports, now) {
            let tracked = state.clients.get_mut(&client).expect("inserted above");
            tracked.reported = Some(now);
            Some(Report {
                client: Some(client),
                addresses: 1,
                counts: std::mem::take(&mut tracked.pending),
            })
        } else {
            None
        };
        Verdict {
            retry_after,
            report,
        }
    }

    /// The reports due at `now`: each address with failures not reported for
    /// [`REPORT_EVERY`], within the global bound, and one sum for the rest (addresses over the
    /// bound, and those forgotten before they were reported). Call it every little while.
    pub fn due_reports(&self, now: Instant) -> Vec<Report> {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        let mut reports = Vec::new();
        let mut others = Report {
            client: None,
            addresses: std::mem::take(&mut state.forgotten_addresses),
            counts: std::mem::take(&mut state.forgotten),
        };
        for (client, tracked) in state.clients.iter_mut() {
            let due = tracked
                .reported
                .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
            if tracked.pending.failures == 0 || !due {
                continue;
            }
            tracked.reported = Some(now);
            let counts = std::mem::take(&mut tracked.pending);
            if take_report_slot(&mut state.window, &mut state.reports, now) {
                reports.push(Report {
                    client: Some(*client),
                    addresses: 1,
                    counts,
                });
            } else {
                others.addresses += 1;
                others.counts.add(counts);
            }
        }
        // The sum is reported even over the bound: one more line a minute at most.
        if others.counts.failures > 0 {
            reports.push(others);
        }
        // Addresses that have earned back all they may and have nothing to report are the
        // same as new ones: dropping them keeps the map small when nobody is failing.
        state.clients.retain(|_, tracked| {
            let idle = now.saturating_duration_since(tracked.updated).as_secs_f64();
            let full = tracked.allowance + idle * FAILURES_PER_SECOND >= FAILURE_BURST;
            let quiet = tracked
                .reported
                .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
            !(full && quiet && tracked.pending.failures == 0)
        });
        reports
    }
}

/// Takes one of the [`MAX_REPORTS`] reports of the current window, if one is left.
fn take_report_slot(window: &mut Option<Instant>, reports: &mut u32, now: Instant) -> bool {
    if window.is_none_or(|start| now.saturating_duration_since(start) >= REPORT_EVERY) {
        *window = Some(now);
        *reports = 0;
    }
    if *reports < MAX_REPORTS {
        *reports += 1;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Client {
        Client::of(Some(text.parse().unwrap()))
    }

    #[test]
    fn an_address_is_limited_after_its_burst_and_earns_failures_back() {
        let limiter = AuthFailures::default();
        let start = Instant::now();
        let attacker = ip("192.0.2.7");
        for i in 0..60 {
            let verdict = limiter.failed(attacker, Failure::Unknown, start);
            assert_eq!(verdict.retry_after, None, "failure {i}");
        }
        let verdict = limiter.failed(attacker, Failure::Malformed, start);
        assert_eq!(
            verdict.retry_after,
            Some(6),
            "one more in 6 s (10 a minute)"
        );
        // Another address is not affected.
        assert_eq!(
            limiter
                .failed(ip("192.0.2.8"), Failure::Unknown, start)
                .retry_after,
            None
        );
        // 6 s later, one more failure is allowed, then limited again.
        let later = start + Duration::from_secs(6);
        assert_eq!(
            limiter
                .failed(attacker, Failure::Unknown, later)
                .retry_after,
            None
        );
        assert!(limiter
            .failed(attacker, Failure::Unknown, later)
            .retry_after
            .is_some());
        // After 6 minutes the whole burst is back.
        let much_later = start + Duration::from_secs(366);
        for _ in 0..60 {
            assert_eq!(
                limiter
                    .failed(attacker, Failure::Unknown, much_later)
                    .retry_after,
                None
            );
        }
    }

    #[test]
    fn failures_are_reported_once_a_minute_per_address_with_their_counts() {
        let limiter = AuthFailures::default();
        let start = Instant::now();
        let attacker = ip("192.0.2.7");
        let first = limiter.failed(attacker, Failure::Unknown, start);
        assert_eq!(
            first.report,
            Some(Report {
                client: Some(attacker),
                addresses: 1,
                counts: Counts {
                    failures: 1,
                    limited: 0,
                    malformed: 0
                },
            })
        );
        for i in 0..4_999 {
            let failure = if i % 2 == 0 {
                Failure::Malformed
            } else {
                Failure::Unknown
            };
            assert_eq!(limiter.failed(attacker, failure, start).report, None);
        }
        assert!(limiter
            .due_reports(start + Duration::from_secs(59))
            .is_empty());
        let reports = limiter.due_reports(start + Duration::from_secs(60));
        assert_eq!(
            reports,
            [Report {
                client: Some(attacker),
                addresses: 1,
                counts: Counts {
                    failures: 4_999,
                    limited: 4_940,
                    malformed: 2_500
                },
            }]
        );
        // Reported: nothing more until new failures.
        assert!(limiter
            .due_reports(start + Duration::from_secs(180))
            .is_empty());
    }

    #[test]
    fn reports_across_addresses_are_bounded_and_the_rest_summed() {
        let limiter = AuthFailures::default();
        let start = Instant::now();
        let mut reported = 0;
        for i in 0..1_000u32 {
            let client = Client::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + i));
            if limiter
                .failed(client, Failure::Unknown, start)
                .report
                .is_some()
            {
                reported += 1;
            }
        }
        assert_eq!(reported, MAX_REPORTS);
        let reports = limiter.due_reports(start + Duration::from_secs(1));
        assert_eq!(
            reports,
            [Report {
                client: None,
                addresses: 900,
                counts: Counts {
                    failures: 900,
                    limited: 0,
                    malformed: 0
                },
            }]
        );
    }

    #[test]
    fn tracked_addresses_are_bounded_and_the_forgotten_still_reported() {
        let limiter = AuthFailures::tracking(100);
        let start = Instant::now();
        for i in 0..1_000u32 {
            let client = Client::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + i));
            limiter.failed(client, Failure::Unknown, start);
            limiter.failed(client, Failure::Unknown, start);
            assert!(limiter.tracked() <= 100);
        }
        let reports = limiter.due_reports(start + Duration::from_secs(60));
        let total: u64 = reports.iter().map(|r| r.counts.failures).sum();
        // Every failure is reported once: 100 at once (the global bound), the rest now.
        assert_eq!(total + 100, 2_000, "{reports:?}");
        // Once quiet and earned back, addresses are dropped.
        limiter.due_reports(start + Duration::from_secs(600));
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_bit_prefix() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(Client::of(None).to_string(), "unknown");
    }
}
