//! Time as the scheduler sees it: a [`Clock`] that tells the time and sleeps until an instant.
//!
//! Production uses [`SystemClock`]; tests use [`TestClock`], whose time moves only when the test
//! advances it, so a test of a monthly job takes microseconds and never races the wall clock.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// A source of the current time that can sleep until a given instant.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;

    /// Returns once the time is at or after `deadline`. Dropping the future cancels the sleep.
    async fn sleep_until(&self, deadline: Timestamp);
}

/// `at + by`, saturated at the ends of representable time (years -9999 and 9999) where `+`
/// would panic: a deadline that far away is never reached, and a cut-off that far back
/// excludes nothing. Time is added with this wherever the duration comes from a definition or
/// a setting.
pub fn saturating_add(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_add(by).unwrap_or(if by.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        // Sleep in real time, re-checking the wall clock on waking: if the system clock was
        // stepped while we slept, the deadline is judged by the wall clock, not by elapsed time.
        loop {
            let left = deadline.duration_since(Timestamp::now());
            if !left.is_positive() {
                return;
            }
            let left = std::time::Duration::try_from(left).unwrap_or(std::time::Duration::MAX);
            tokio::time::sleep(left.min(std::time::Duration::from_secs(60))).await;
        }
    }
}

/// A clock for tests: it stands still until [`TestClock::advance`] or [`TestClock::set`] moves
/// it, and wakes every sleeper whose deadline has come.
#[derive(Clone, Debug)]
pub struct TestClock {
    time: Arc<watch::Sender<Timestamp>>,
}

impl TestClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> TestClock {
        TestClock {
            time: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: SignedDuration) {
        self.time.send_modify(|t| *t += by);
    }

    /// Sets the clock to `to` (which may be in the past: a stepped system clock).
    pub fn set(&self, to: Timestamp) {
        self.time.send_replace(to);
    }

    /// How many tasks are asleep on this clock (lets a test wait until the scheduler sleeps).
    pub fn sleepers(&self) -> usize {
        self.time.receiver_count()
    }
}

#[async_trait]
impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.time.borrow()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut rx = self.time.subscribe();
        // `wait_for` returns at once if the condition already holds.
        let _ = rx.wait_for(|now| *now >= deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_clock_wakes_sleepers_when_advanced_past_their_deadline() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = TestClock::new(start);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move {
                clock
                    .sleep_until(start + SignedDuration::from_hours(24 * 31))
                    .await
            })
        };
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(SignedDuration::from_hours(24 * 30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(SignedDuration::from_hours(24));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), start + SignedDuration::from_hours(24 * 31));
        // A deadline in the past returns at once.
        clock.sleep_until(start).await;
    }
}
