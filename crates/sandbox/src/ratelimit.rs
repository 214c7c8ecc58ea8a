//! A per-key sliding-window limiter with a daily budget, the model GHL documents (100 requests
//! per 10 s per app per location, 200,000 a day) and that the other emulated APIs resemble.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits for one key. `enabled: false` still reports the numbers but never refuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Requests allowed in any window of `window_ms`.
    pub burst_max: u32,
    pub window_ms: u64,
    /// Requests allowed per day (a rolling 24 h from a key's first request).
    pub daily_limit: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            burst_max: 100,
            window_ms: 10_000,
            daily_limit: 200_000,
        }
    }
}

impl RateLimitConfig {
    /// Never refuses, and reports a budget too large to slow a client that paces itself by
    /// the headers (as GHL's clients must): "limits off" means off for the client too.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            burst_max: 1_000_000,
            window_ms: 10_000,
            daily_limit: 1_000_000_000,
        }
    }
}

/// The outcome of one check: everything the `X-RateLimit-*` headers need.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitStatus {
    pub allowed: bool,
    pub max: u32,
    pub remaining: u32,
    pub interval_ms: u64,
    pub daily_limit: u64,
    pub daily_remaining: u64,
    /// When a refused caller may try again.
    pub retry_after: Duration,
}

#[derive(Debug)]
struct Bucket {
    hits: VecDeque<Instant>,
    day_start: Instant,
    day_used: u64,
}

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug)]
pub struct SlidingWindowLimiter<K> {
    config: Mutex<RateLimitConfig>,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> SlidingWindowLimiter<K> {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config: Mutex::new(config),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> RateLimitConfig {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_config(&self, config: RateLimitConfig) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Forget all usage.
    pub fn reset(&self) {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Counts one request for `key` if it is within both limits. Refused requests are not
    /// counted, so a client that backs off recovers after one window.
    pub fn check(&self, key: &K) -> RateLimitStatus {
        self.check_at(key, Instant::now())
    }

    pub fn check_at(&self, key: &K, now: Instant) -> RateLimitStatus {
        let cfg = self.config();
        let window = Duration::from_millis(cfg.window_ms.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(key.clone()).or_insert_with(|| Bucket {
            hits: VecDeque::new(),
            day_start: now,
            day_used: 0,
        });
        while let Some(&first) = b.hits.front() {
            if now.duration_since(first) >= window {
                b.hits.pop_front();
            } else {
                break;
            }
        }
        if now.duration_since(b.day_start) >= DAY {
            b.day_start = now;
            b.day_used = 0;
        }
        let burst_full = b.hits.len() as u64 >= u64::from(cfg.burst_max);
        let daily_full = b.day_used >= cfg.daily_limit;
        let allowed = !cfg.enabled || (!burst_full && !daily_full);
        if allowed {
            b.hits.push_back(now);
            b.day_used += 1;
        }
        let retry_after = if daily_full {
            DAY.saturating_sub(now.duration_since(b.day_start))
        } else {
            b.hits
                .front()
                .map(|f| window.saturating_sub(now.duration_since(*f)))
                .unwrap_or_default()
        };
        RateLimitStatus {
            allowed,
            max: cfg.burst_max,
            remaining: (u64::from(cfg.burst_max).saturating_sub(b.hits.len() as u64)) as u32,
            interval_ms: cfg.window_ms,
            daily_limit: cfg.daily_limit,
            daily_remaining: cfg.daily_limit.saturating_sub(b.day_used),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides_and_refusals_do_not_count() {
        let l = SlidingWindowLimiter::new(RateLimitConfig {
            enabled: true,
            burst_max: 3,
            window_ms: 1000,
            daily_limit: 5,
        });
        let t0 = Instant::now();
        let k = "a".to_string();
        assert_eq!(l.check_at(&k, t0).remaining, 2);
        assert_eq!(l.check_at(&k, t0).remaining, 1);
        assert_eq!(l.check_at(&k, t0 + Duration::from_millis(500)).remaining, 0);
        let refused = l.check_at(&k, t0 + Duration::from_millis(600));
        assert!(!refused.allowed);
        assert_eq!(refused.daily_remaining, 2);
        assert_eq!(refused.retry_after, Duration::from_millis(400));
        // The first two hits leave the window at t0+1s.
        let s = l.check_at(&k, t0 + Duration::from_millis(1000));
        assert!(s.allowed);
        assert_eq!(s.remaining, 1);
        assert!(l.check_at(&k, t0 + Duration::from_millis(1001)).allowed);
        // Daily budget of 5 is now spent.
        let d = l.check_at(&k, t0 + Duration::from_millis(5000));
        assert!(!d.allowed);
        assert_eq!(d.daily_remaining, 0);
        // Other keys are independent.
        assert!(l.check_at(&"b".to_string(), t0).allowed);
    }
}
