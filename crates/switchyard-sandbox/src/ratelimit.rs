//! Slack's rate limits: per-method tiers, and `chat.postMessage` per channel.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A limit: a steady rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MethodLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// How the sandbox limits calls. Settable at start and through `PUT /_sandbox/rate_limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Multiplies every rate (0.1 = ten times tighter). Bursts shrink with it, to no less than 1.
    pub scale: f64,
    /// Per-method limits that replace the tier's.
    pub overrides: BTreeMap<String, MethodLimit>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            scale: 1.0,
            overrides: BTreeMap::new(),
        }
    }
}

/// Slack's tiers, per minute.
pub fn tier_limit(tier: u8) -> MethodLimit {
    let per_minute = match tier {
        1 => 1,
        2 => 20,
        3 => 50,
        _ => 100,
    };
    MethodLimit {
        per_minute,
        burst: (per_minute / 4).max(1),
    }
}

/// `chat.postMessage` and incoming webhooks: about one message a second per channel.
pub const PER_CHANNEL: MethodLimit = MethodLimit {
    per_minute: 60,
    burst: 3,
};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by method (and channel).
#[derive(Debug, Default)]
pub struct RateLimiter {
    pub settings: RateLimitSettings,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            settings,
            buckets: HashMap::new(),
        }
    }

    pub fn set(&mut self, settings: RateLimitSettings) {
        self.settings = settings;
        self.buckets.clear();
    }

    /// Takes one call from the bucket `key`, or says how long to wait.
    pub fn check(&mut self, method: &str, key: &str, default: MethodLimit) -> Result<(), Duration> {
        if !self.settings.enabled {
            return Ok(());
        }
        let limit = self
            .settings
            .overrides
            .get(method)
            .copied()
            .unwrap_or(default);
        let scale = if self.settings.scale > 0.0 {
            self.settings.scale
        } else {
            1.0
        };
        let rate_per_sec = f64::from(limit.per_minute) * scale / 60.0;
        let capacity = (f64::from(limit.burst) * scale).max(1.0).floor();
        let now = Instant::now();
        let bucket = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate_per_sec).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate_per_sec <= 0.0 {
            Err(Duration::from_secs(60))
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate_per_sec,
            ))
        }
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited() {
        let mut limiter = RateLimiter::new(RateLimitSettings::default());
        for _ in 0..3 {
            limiter
                .check("chat.postMessage", "C1", PER_CHANNEL)
                .unwrap();
        }
        let wait = limiter
            .check("chat.postMessage", "C1", PER_CHANNEL)
            .unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(limiter.check("chat.postMessage", "C2", PER_CHANNEL).is_ok());
    }

    #[test]
    fn disabled_never_limits() {
        let mut limiter = RateLimiter::new(RateLimitSettings {
            enabled: false,
            ..Default::default()
        });
        for _ in 0..100 {
            limiter.check("x", "x", tier_limit(1)).unwrap();
        }
    }
}
