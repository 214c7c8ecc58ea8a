//! The rate governor: keeps every connector instance on one (app, location) inside GHL's limits
//! (100 requests per 10 s sliding window, 200,000 a day; NOTES §4) so steady state sees no 429.
//!
//! [`Budget`] is the pure decision logic, driven by an explicit clock in milliseconds. [`Governor`]
//! wraps it in a mutex and sleeps on the calling (blocking) thread; [`shared`] hands out one
//! governor per key for the whole process.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use tether_abi::Priority;

/// GHL's published limits, used until response headers say otherwise.
pub const DEFAULT_BURST: u32 = 100;
pub const DEFAULT_WINDOW_MS: u64 = 10_000;
pub const DEFAULT_DAILY: u64 = 200_000;
/// How long a spent daily budget blocks before one probe request may ask the server again.
const DAILY_PROBE_MS: i64 = 60_000;
/// Sleep granularity when only in-flight requests fill the window (no completion time yet).
const IN_FLIGHT_POLL_MS: u64 = 20;

/// The five `X-RateLimit-*` headers of one response; absent ones are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub max: Option<u32>,
    pub remaining: Option<u32>,
    pub interval_ms: Option<u64>,
    pub daily_limit: Option<u64>,
    pub daily_remaining: Option<u64>,
}

impl RateHeaders {
    /// Reads the headers by name, case-insensitively; unparsable values count as absent.
    pub fn parse(headers: &[(String, String)]) -> RateHeaders {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        RateHeaders {
            max: get("x-ratelimit-max").and_then(|v| v.parse().ok()),
            remaining: get("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            interval_ms: get("x-ratelimit-interval-milliseconds").and_then(|v| v.parse().ok()),
            daily_limit: get("x-ratelimit-limit-daily").and_then(|v| v.parse().ok()),
            daily_remaining: get("x-ratelimit-daily-remaining").and_then(|v| v.parse().ok()),
        }
    }
}

/// What to do before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Go,
    Wait {
        ms: u64,
    },
    /// The daily budget is spent: fail the call rather than block a worker for hours.
    DailyExhausted,
}

/// The governor's model of the server's sliding window for one key.
#[derive(Debug, Clone)]
pub struct Budget {
    burst: u32,
    window_ms: u64,
    daily_limit: u64,
    daily_remaining: Option<u64>,
    daily_probe_at: i64,
    /// Times counted in the server's window. A request is stamped with the time its response
    /// arrived, which is never earlier than when the server counted it: the model frees a slot
    /// no sooner than the server does.
    hits: VecDeque<i64>,
    in_flight: u32,
    /// After a 429: nothing is sent before this time.
    blocked_until: i64,
    /// Live callers waiting for a slot: backfill sends nothing while any wait.
    live_waiting: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_BURST, DEFAULT_WINDOW_MS, DEFAULT_DAILY)
    }
}

impl Budget {
    pub fn new(burst: u32, window_ms: u64, daily_limit: u64) -> Budget {
        Budget {
            burst: burst.max(1),
            window_ms: window_ms.max(1),
            daily_limit,
            daily_remaining: None,
            daily_probe_at: 0,
            hits: VecDeque::new(),
            in_flight: 0,
            blocked_until: 0,
            live_waiting: 0,
        }
    }

    pub fn limits(&self) -> (u32, u64, u64) {
        (self.burst, self.window_ms, self.daily_limit)
    }

    fn prune(&mut self, now: i64) {
        let window = self.window_ms as i64;
        while self.hits.front().is_some_and(|&t| now - t >= window) {
            self.hits.pop_front();
        }
    }

    /// Used slots: requests still in the window plus those not answered yet.
    pub fn used(&mut self, now: i64) -> u32 {
        self.prune(now);
        self.hits.len() as u32 + self.in_flight
    }

    /// Slots backfill may use: a fifth of the window (at least one slot) stays free for live
    /// traffic, so a webhook that arrives during a backfill is sent at once.
    pub fn backfill_limit(&self) -> u32 {
        if self.burst <= 1 {
            // Nothing to set aside; backfill still yields while live callers wait.
            return self.burst;
        }
        self.burst - (self.burst / 5).max(1)
    }

    pub fn decide(&mut self, now: i64, priority: Priority) -> Decision {
        if now < self.blocked_until {
            return Decision::Wait {
                ms: (self.blocked_until - now) as u64,
            };
        }
        if self.daily_remaining == Some(0) && now < self.daily_probe_at {
            return Decision::DailyExhausted;
        }
        let limit = match priority {
            Priority::Live => self.burst,
            Priority::Backfill if self.live_waiting > 0 => return Decision::Wait { ms: IN_FLIGHT_POLL_MS },
            Priority::Backfill => self.backfill_limit(),
        };
        if self.used(now) < limit {
            return Decision::Go;
        }
        match self.hits.front() {
            // The slot of the oldest answered request frees when it leaves the window.
            Some(&oldest) => Decision::Wait {
                ms: (oldest + self.window_ms as i64 - now).max(1) as u64,
            },
            None => Decision::Wait { ms: IN_FLIGHT_POLL_MS },
        }
    }

    /// Takes a slot; call [`Budget::complete`] when the response (or failure) is in.
    pub fn start(&mut self, now: i64) {
        self.in_flight += 1;
        if self.daily_remaining == Some(0) {
            // This is the probe: the next one waits a full probe interval.
            self.daily_probe_at = now + DAILY_PROBE_MS;
        }
    }

    /// Records the end of a request at `now` and corrects the model from the headers.
    pub fn complete(&mut self, now: i64, headers: &RateHeaders) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.hits.push_back(now);
        if let Some(max) = headers.max.filter(|m| *m > 0) {
            self.burst = max;
        }
        if let Some(interval) = headers.interval_ms.filter(|i| *i > 0) {
            self.window_ms = interval;
        }
        if let Some(daily) = headers.daily_limit {
            self.daily_limit = daily;
        }
        if let Some(left) = headers.daily_remaining {
            self.daily_remaining = Some(left);
            if left == 0 {
                self.daily_probe_at = now + DAILY_PROBE_MS;
            }
        }
        if let Some(remaining) = headers.remaining {
            // Others (another host, another instance keyed apart) use the same server budget:
            // when the server says fewer remain than the model thinks, book the difference now.
            self.prune(now);
            // The server has counted our other requests still in flight too: leave them out of
            // the difference, or they would be booked twice (once here, once on completion).
            let believed = self.burst.saturating_sub(self.hits.len() as u32 + self.in_flight);
            for _ in 0..believed.saturating_sub(remaining) {
                self.hits.push_back(now);
            }
        }
    }

    /// A 429 came back anyway: block everyone on this key for the server's delay, or for a
    /// whole window when it gave none.
    pub fn throttled(&mut self, now: i64, retry_after_ms: Option<u64>, headers: &RateHeaders) {
        self.complete(now, headers);
        let wait = retry_after_ms.or(headers.interval_ms).unwrap_or(self.window_ms).max(1);
        self.blocked_until = self.blocked_until.max(now + wait as i64);
    }

    /// A request that ended without a response; it may still have reached the server.
    pub fn failed(&mut self, now: i64) {
        self.complete(now, &RateHeaders::default());
    }
}

/// One key's budget, shared by threads. Sleeps on the caller's thread, which is a blocking
/// thread: the host runs every connector call on one.
#[derive(Debug)]
pub struct Governor {
    budget: Mutex<Budget>,
    epoch: Instant,
}

impl Default for Governor {
    fn default() -> Self {
        Governor::new(Budget::default())
    }
}

impl Governor {
    pub fn new(budget: Budget) -> Governor {
        Governor {
            budget: Mutex::new(budget),
            epoch: Instant::now(),
        }
    }

    /// Monotonic milliseconds: a wall-clock jump must not free or block slots.
    fn now(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        // A panic elsewhere while holding the lock leaves plain numbers behind: keep using them.
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request of `priority` may be sent and takes its slot.
    pub fn acquire(&self, priority: Priority) -> Result<(), Exhausted> {
        let mut registered = false;
        loop {
            let wait = {
                let mut budget = self.budget();
                let now = self.now();
                let decision = budget.decide(now, priority);
                if registered && !matches!(decision, Decision::Wait { .. }) {
                    // This caller stops waiting, whether it goes or fails.
                    budget.live_waiting = budget.live_waiting.saturating_sub(1);
                }
                match decision {
                    Decision::Go => {
                        budget.start(now);
                        return Ok(());
                    }
                    Decision::DailyExhausted => return Err(Exhausted),
                    Decision::Wait { ms } => {
                        if priority == Priority::Live && !registered {
                            budget.live_waiting += 1;
                            registered = true;
                        }
                        ms
                    }
                }
            };
            std::thread::sleep(Duration::from_millis(wait));
        }
    }

    pub fn complete(&self, headers: &RateHeaders) {
        let now = self.now();
        self.budget().complete(now, headers);
    }

    pub fn throttled(&self, retry_after_ms: Option<u64>, headers: &RateHeaders) {
        let now = self.now();
        self.budget().throttled(now, retry_after_ms, headers);
    }

    pub fn failed(&self) {
        let now = self.now();
        self.budget().failed(now);
    }
}

thread_local! {
    static PRIORITY: Cell<Priority> = const { Cell::new(Priority::Live) };
}

/// Marks the requests this thread sends, until dropped, as `priority`. A connector call runs on
/// one blocking thread from start to end, so the scope covers exactly that call's requests.
pub fn priority_scope(priority: Priority) -> PriorityScope {
    PriorityScope(PRIORITY.with(|p| p.replace(priority)))
}

pub struct PriorityScope(Priority);

impl Drop for PriorityScope {
    fn drop(&mut self) {
        PRIORITY.with(|p| p.set(self.0));
    }
}

/// The priority of requests sent from this thread now.
pub fn current_priority() -> Priority {
    PRIORITY.with(Cell::get)
}

/// The daily budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

/// The governor for `(app, location)`: every connector instance in the process on that key
/// shares it, as GHL counts per app per location.
pub fn shared(app: &str, location_id: &str) -> Arc<Governor> {
    type Registry = Mutex<HashMap<(String, String), Arc<Governor>>>;
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Default::default);
    let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
    map.entry((app.to_owned(), location_id.to_owned())).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(max: u32, remaining: u32, interval: u64) -> RateHeaders {
        RateHeaders {
            max: Some(max),
            remaining: Some(remaining),
            interval_ms: Some(interval),
            daily_limit: Some(200_000),
            daily_remaining: Some(199_000),
        }
    }

    #[test]
    fn parses_the_five_headers() {
        let h = RateHeaders::parse(&[
            ("X-RateLimit-Max".into(), "100".into()),
            ("x-ratelimit-remaining".into(), " 42 ".into()),
            ("X-RateLimit-Interval-Milliseconds".into(), "10000".into()),
            ("X-RateLimit-Limit-Daily".into(), "200000".into()),
            ("X-RateLimit-Daily-Remaining".into(), "nope".into()),
        ]);
        assert_eq!(
            h,
            RateHeaders {
                max: Some(100),
                remaining: Some(42),
                interval_ms: Some(10_000),
                daily_limit: Some(200_000),
                daily_remaining: None,
            }
        );
    }

    #[test]
    fn a_full_window_waits_for_its_oldest_slot() {
        let mut b = Budget::new(3, 1_000, 1_000);
        for t in [0, 10, 20] {
            assert_eq!(b.decide(t, Priority::Live), Decision::Go);
            b.start(t);
            b.complete(t + 5, &RateHeaders::default());
        }
        // Slots answered at 5, 15, 25: the first frees at 1005.
        assert_eq!(b.decide(100, Priority::Live), Decision::Wait { ms: 905 });
        assert_eq!(b.decide(1_004, Priority::Live), Decision::Wait { ms: 1 });
        assert_eq!(b.decide(1_005, Priority::Live), Decision::Go);
    }

    #[test]
    fn in_flight_requests_hold_slots() {
        let mut b = Budget::new(2, 1_000, 1_000);
        b.start(0);
        b.start(0);
        assert_eq!(b.decide(1, Priority::Live), Decision::Wait { ms: IN_FLIGHT_POLL_MS });
        b.complete(50, &RateHeaders::default());
        assert_eq!(b.decide(60, Priority::Live), Decision::Wait { ms: 990 });
    }

    #[test]
    fn headers_seed_limits_and_book_foreign_usage() {
        let mut b = Budget::new(100, 10_000, 200_000);
        b.start(0);
        // The server says 5 per 2 s, and only 1 left: three others used the window.
        b.complete(10, &headers(5, 1, 2_000));
        assert_eq!(b.limits(), (5, 2_000, 200_000));
        assert_eq!(b.used(10), 4);
        assert_eq!(b.decide(10, Priority::Live), Decision::Go);
        b.start(10);
        b.complete(20, &headers(5, 0, 2_000));
        assert_eq!(b.decide(30, Priority::Live), Decision::Wait { ms: 1_980 });
        assert_eq!(b.decide(2_020, Priority::Live), Decision::Go);
    }

    #[test]
    fn a_429_blocks_for_retry_after_or_the_interval() {
        let mut b = Budget::new(100, 10_000, 200_000);
        b.start(0);
        b.throttled(100, Some(3_000), &RateHeaders::default());
        assert_eq!(b.decide(200, Priority::Live), Decision::Wait { ms: 2_900 });
        assert_eq!(b.decide(3_100, Priority::Live), Decision::Go);

        let mut b = Budget::new(100, 10_000, 200_000);
        b.start(0);
        b.throttled(0, None, &headers(100, 0, 7_000));
        assert_eq!(b.decide(0, Priority::Live), Decision::Wait { ms: 7_000 });
    }

    #[test]
    fn a_spent_day_fails_fast_then_probes() {
        let mut b = Budget::new(100, 10_000, 10);
        b.start(0);
        let mut h = headers(100, 99, 10_000);
        h.daily_remaining = Some(0);
        b.complete(5, &h);
        assert_eq!(b.decide(10, Priority::Live), Decision::DailyExhausted);
        assert_eq!(b.decide(5 + DAILY_PROBE_MS, Priority::Live), Decision::Go);
        b.start(5 + DAILY_PROBE_MS);
        assert_eq!(b.decide(6 + DAILY_PROBE_MS, Priority::Live), Decision::DailyExhausted);
    }

    #[test]
    fn the_registry_shares_per_key() {
        let a = shared("app", "loc-1");
        let b = shared("app", "loc-1");
        let c = shared("app", "loc-2");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn backfill_leaves_a_fifth_of_the_window_to_live_traffic() {
        let mut b = Budget::new(10, 1_000, 1_000);
        assert_eq!(b.backfill_limit(), 8);
        for t in 0..8 {
            assert_eq!(b.decide(t, Priority::Backfill), Decision::Go);
            b.start(t);
            b.complete(t, &RateHeaders::default());
        }
        assert_eq!(b.decide(8, Priority::Backfill), Decision::Wait { ms: 992 });
        assert_eq!(b.decide(8, Priority::Live), Decision::Go);
        assert_eq!(Budget::new(100, 10_000, 1).backfill_limit(), 80);
        assert_eq!(Budget::new(1, 10_000, 1).backfill_limit(), 1);
    }

    #[test]
    fn backfill_yields_while_live_callers_wait() {
        let mut b = Budget::new(10, 1_000, 1_000);
        b.live_waiting = 1;
        assert_eq!(
            b.decide(0, Priority::Backfill),
            Decision::Wait { ms: IN_FLIGHT_POLL_MS }
        );
        assert_eq!(b.decide(0, Priority::Live), Decision::Go);
    }

    #[test]
    fn a_live_caller_stops_counting_as_waiting_once_it_goes() {
        let governor = Arc::new(Governor::new(Budget::new(1, 50, 1_000)));
        governor.acquire(Priority::Live).expect("first");
        let second = {
            let governor = Arc::clone(&governor);
            std::thread::spawn(move || governor.acquire(Priority::Live))
        };
        // The first request completes; its slot frees 50 ms later and the waiting caller goes.
        std::thread::sleep(Duration::from_millis(10));
        governor.complete(&RateHeaders::default());
        second.join().expect("thread").expect("second");
        assert_eq!(governor.budget().live_waiting, 0);
    }

    #[test]
    fn priority_scopes_nest_and_restore() {
        assert_eq!(current_priority(), Priority::Live);
        {
            let _backfill = priority_scope(Priority::Backfill);
            assert_eq!(current_priority(), Priority::Backfill);
            {
                let _live = priority_scope(Priority::Live);
                assert_eq!(current_priority(), Priority::Live);
            }
            assert_eq!(current_priority(), Priority::Backfill);
        }
        assert_eq!(current_priority(), Priority::Live);
    }

    #[test]
    fn remaining_counts_our_requests_in_flight_once() {
        // Three requests out; the first answer says 7 remain: the server counted all three.
        let mut b = Budget::new(10, 1_000, 1_000);
        for t in 0..3 {
            b.start(t);
        }
        let headers = RateHeaders {
            remaining: Some(7),
            ..RateHeaders::default()
        };
        b.complete(5, &headers);
        assert_eq!(
            b.used(5),
            3,
            "the two still in flight must not be booked as someone else's usage"
        );
        // Someone else really did use two more: that difference is booked.
        b.complete(
            6,
            &RateHeaders {
                remaining: Some(5),
                ..RateHeaders::default()
            },
        );
        assert_eq!(b.used(6), 5);
    }
}
