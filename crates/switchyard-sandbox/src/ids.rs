//! Slack-shaped identifiers and timestamps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

/// Hands out ids that look like Slack's (`C0000000A1`) and unique message timestamps.
#[derive(Debug, Default)]
pub struct IdGen {
    counter: AtomicU64,
    last_ts_micros: AtomicU64,
}

impl IdGen {
    /// A new id with Slack's one-letter prefix (`U`, `C`, `D`, `V`, `F`, `B`, `A`, `T`).
    pub fn id(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{prefix}0{n:08X}")
    }

    /// An event id: `Ev` and eight more characters, as Slack's.
    pub fn event_id(&self) -> String {
        self.id("Ev")
    }

    /// A message timestamp, `seconds.micros`, strictly increasing within the workspace.
    pub fn ts(&self) -> String {
        let now = now_micros();
        let mut last = self.last_ts_micros.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_ts_micros.compare_exchange(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return format!("{}.{:06}", next / 1_000_000, next % 1_000_000),
                Err(seen) => last = seen,
            }
        }
    }
}

/// A random secret of `len` lowercase alphanumerics (tickets, webhook and response URL secrets).
pub fn secret(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A trigger id as Slack shapes them: `<digits>.<digits>.<hex>`.
pub fn trigger_id() -> String {
    let mut rng = rand::rng();
    format!(
        "{}.{}.{:032x}",
        rng.random_range(1_000_000_000u64..9_999_999_999),
        rng.random_range(1_000_000_000u64..9_999_999_999),
        rng.random::<u128>()
    )
}

/// A UUID-shaped envelope id.
pub fn envelope_id() -> String {
    let n: u128 = rand::rng().random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

pub fn now_ms() -> u64 {
    now_micros() / 1_000
}

pub fn now_secs() -> u64 {
    now_micros() / 1_000_000
}

/// `1700000000.000100` → `p1700000000000100`, the permalink form.
pub fn permalink_ts(ts: &str) -> String {
    format!("p{}", ts.replace('.', ""))
}
