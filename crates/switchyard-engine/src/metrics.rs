//! Process-wide counters for `GET /metrics`, in Prometheus' text format.
//!
//! A tiny registry of atomics rather than a metrics crate: the set is fixed, and every update is
//! one relaxed atomic add with no lock, so instrumenting the hot path is one line
//! (`metrics::RECEIVED.inc("event")`). Labelled counters keep their label values in a fixed
//! table of slots claimed once (lock-free); past [`MAX_LABELS`] distinct values the rest count
//! under `other`. Gauges that belong to one server (open sockets, outbox depth) are passed to
//! [`render`] by the server.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Distinct label values a labelled counter keeps apart.
pub const MAX_LABELS: usize = 64;

/// A counter that only goes up.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        let _ = writeln!(out, "{} {}", self.name, self.get());
    }
}

struct Slot {
    label: OnceLock<Box<str>>,
    value: AtomicU64,
}

/// A counter per value of one label (`kind`, `app`, `method`).
pub struct LabeledCounter {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    slots: [Slot; MAX_LABELS],
    other: AtomicU64,
}

impl LabeledCounter {
    const fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self {
            name,
            help,
            label,
            slots: [const {
                Slot {
                    label: OnceLock::new(),
                    value: AtomicU64::new(0),
                }
            }; MAX_LABELS],
            other: AtomicU64::new(0),
        }
    }

    pub fn inc(&self, label: &str) {
        self.cell(label).fetch_add(1, Ordering::Relaxed);
    }

    /// The count for one label value.
    pub fn get(&self, label: &str) -> u64 {
        self.slots
            .iter()
            .find(|s| s.label.get().is_some_and(|l| &**l == label))
            .map_or(0, |s| s.value.load(Ordering::Relaxed))
    }

    /// The slot for `label`: found, or claimed at the first free slot. Two threads claiming the
    /// same free slot race on `OnceLock::set`; the loser reads the winner's label and moves on
    /// if it is not its own, so a value never gets two slots.
    fn cell(&self, label: &str) -> &AtomicU64 {
        for slot in &self.slots {
            match slot.label.get() {
                Some(held) if &**held == label => return &slot.value,
                Some(_) => continue,
                None => {
                    let _ = slot.label.set(label.into());
                    if slot.label.get().is_some_and(|held| &**held == label) {
                        return &slot.value;
                    }
                }
            }
        }
        &self.other
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for slot in &self.slots {
            let Some(label) = slot.label.get() else { break };
            let _ = writeln!(
                out,
                "{}{{{}=\"{}\"}} {}",
                self.name,
                self.label,
                escape(label),
                slot.value.load(Ordering::Relaxed)
            );
        }
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            let _ = writeln!(out, "{}{{{}=\"other\"}} {other}", self.name, self.label);
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram with fixed buckets.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    /// Observations per bucket (not cumulative; the last one is `+Inf`).
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            counts: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Awaits `work`, observing how long it took.
    pub async fn time<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let output = work.await;
        self.observe(started.elapsed());
        output
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let counts = self.counts.iter().map(|c| c.load(Ordering::Relaxed));
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        histogram_series(out, self.name, None, &BUCKETS, counts, sum);
    }
}

/// One histogram's `_bucket`, `_sum` and `_count` lines, from its counts per bucket (not
/// cumulative; the last past the last bound), with `label` (name, value) on each line.
fn histogram_series(
    out: &mut String,
    name: &str,
    label: Option<(&str, &str)>,
    bounds: &[f64],
    counts: impl Iterator<Item = u64>,
    sum_secs: f64,
) {
    let (label, sole) = match label {
        Some((label, value)) => {
            let pair = format!("{label}=\"{}\"", escape(value));
            (format!("{pair},"), format!("{{{pair}}}"))
        }
        None => (String::new(), String::new()),
    };
    let mut cumulative = 0;
    for (i, count) in counts.enumerate() {
        cumulative += count;
        let le = bounds
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{{label}le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum{sole} {sum_secs}");
    let _ = writeln!(out, "{name}_count{sole} {cumulative}");
}

/// Deliveries received, by kind (`event`, `command`, `interaction`, `http`).
pub static RECEIVED: LabeledCounter = LabeledCounter::new(
    "switchyard_received_total",
    "Deliveries received (Slack events, commands, interactions; apps' HTTP routes), by kind.",
    "kind",
);
/// Deliveries dropped as resends of one already in the inbox.
pub static DEDUPLICATED: Counter = Counter::new(
    "switchyard_deduplicated_total",
    "Deliveries dropped as duplicates of one already committed to the inbox.",
);
/// From a delivery's arrival to its ack (inbox commit included).
pub static ACK_SECONDS: Histogram = Histogram::new(
    "switchyard_ack_seconds",
    "Time from a delivery's arrival to its acknowledgement, inbox commit included.",
);
/// Inbox items handed to the dispatcher (new ones, and ones taken over or retried).
pub static DISPATCHED: Counter = Counter::new(
    "switchyard_dispatched_total",
    "Inbox items handed to a worker (new, taken over after a lease ran out, or retried).",
);
/// Inputs an app handled without error.
pub static HANDLED: LabeledCounter = LabeledCounter::new(
    "switchyard_handled_total",
    "Inputs an app handled without error, by app.",
    "app",
);
/// Inputs whose handler returned an error.
pub static APP_ERRORS: LabeledCounter = LabeledCounter::new(
    "switchyard_app_errors_total",
    "Inputs whose handler returned an error, by app.",
    "app",
);
/// Slack calls that succeeded.
pub static SENT: LabeledCounter = LabeledCounter::new(
    "switchyard_sent_total",
    "Slack calls from the outbox that succeeded, by method.",
    "method",
);
/// Slack calls to be tried again (429, 5xx, timeouts).
pub static RETRIED: LabeledCounter = LabeledCounter::new(
    "switchyard_retried_total",
    "Slack calls from the outbox that will be tried again (rate limited or transient), by method.",
    "method",
);
/// Slack calls given up on (permanent errors).
pub static FAILED: LabeledCounter = LabeledCounter::new(
    "switchyard_failed_total",
    "Slack calls from the outbox given up on (permanent errors), by method.",
    "method",
);
/// 429s from Slack waited out.
pub static RATE_LIMIT_WAITS: LabeledCounter = LabeledCounter::new(
    "switchyard_rate_limit_waits_total",
    "Slack 429 replies whose Retry-After the sender waited out, by method.",
    "method",
);
/// Calls the sender held back to stay within Slack's limits before Slack had to say so.
pub static PACING_WAITS: Counter = Counter::new(
    "switchyard_pacing_waits_total",
    "Slack calls the sender held back to stay within Slack's rate limits.",
);

/// Posts whose earlier attempt's outcome was lost, looked for in Slack before posting again.
pub static OUTBOX_LOOKUPS: LabeledCounter = LabeledCounter::new(
    "switchyard_outbox_lookups_total",
    "Posts whose earlier attempt's outcome was lost, looked for in Slack before posting again, by outcome (found: recorded as sent, not posted again; not_found; unavailable: posted unchecked).",
    "outcome",
);

/// The sender's claims: the search for due calls (on SQLite, every channel's head of line on
/// a reader) and the update that leases what it found.
pub static SENDER_CLAIM_SECONDS: Histogram = Histogram::new(
    "switchyard_sender_claim_seconds",
    "Time the sender's claims of due Slack calls took, the search for them included.",
);
/// The sender's look-ups of when the next call comes due, each time it goes to sleep.
pub static SENDER_NEXT_DUE_SECONDS: Histogram = Histogram::new(
    "switchyard_sender_next_due_seconds",
    "Time the sender's look-ups of when the next Slack call comes due took.",
);

/// A handler's outcome, for its app (`None`: no app, e.g. the help reply).
pub fn app_outcome(app: Option<&'static str>, ok: bool) {
    match (app, ok) {
        (Some(app), true) => HANDLED.inc(app),
        (Some(app), false) => APP_ERRORS.inc(app),
        (None, _) => {}
    }
}

/// A Slack call's outcome, by method.
pub fn call_outcome<T>(method: &str, result: &Result<T, crate::slack::CallError>) {
    use crate::slack::CallError;
    match result {
        Ok(_) => SENT.inc(method),
        Err(CallError::RateLimited { .. }) => {
            RATE_LIMIT_WAITS.inc(method);
            RETRIED.inc(method);
        }
        Err(CallError::Transient(_)) => RETRIED.inc(method),
        Err(CallError::Permanent(_)) => FAILED.inc(method),
    }
}

/// One server's gauges, read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Outbox items pending, as last read (every few seconds).
    pub outbox_pending: i64,
    /// Socket Mode connections open (0 in HTTP mode).
    pub socket_connections: u64,
}

/// Everything, in Prometheus' text exposition format (0.0.4).
pub fn render(gauges: &Gauges) -> String {
    let mut out = String::with_capacity(4096);
    RECEIVED.render(&mut out);
    DEDUPLICATED.render(&mut out);
    ACK_SECONDS.render(&mut out);
    DISPATCHED.render(&mut out);
    HANDLED.render(&mut out);
    APP_ERRORS.render(&mut out);
    SENT.render(&mut out);
    RETRIED.render(&mut out);
    FAILED.render(&mut out);
    RATE_LIMIT_WAITS.render(&mut out);
    PACING_WAITS.render(&mut out);
    OUTBOX_LOOKUPS.render(&mut out);
    SENDER_CLAIM_SECONDS.render(&mut out);
    SENDER_NEXT_DUE_SECONDS.render(&mut out);
    header(
        &mut out,
        "switchyard_outbox_pending",
        "Slack calls waiting in the outbox (read every few seconds).",
        "gauge",
    );
    let _ = writeln!(out, "switchyard_outbox_pending {}", gauges.outbox_pending);
    header(
        &mut out,
        "switchyard_socket_connections",
        "Socket Mode connections open.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "switchyard_socket_connections {}",
        gauges.socket_connections
    );
    out
}

/// The SQLite writer's turns ([`switchyard_store::Store::writer_turns`]): how long writes
/// waited for it, by priority, and held it, by operation. What an ack waits for beyond its
/// own insert is whatever holds the turn.
pub fn render_writer_turns(out: &mut String, turns: &switchyard_store::WriterTurns) {
    labelled_histograms(
        out,
        "switchyard_store_writer_wait_seconds",
        "Time a write waited for its turn at SQLite's one writer, by priority (ack: the inbox's commit).",
        "priority",
        &turns.waited,
    );
    labelled_histograms(
        out,
        "switchyard_store_writer_hold_seconds",
        "Time a write held SQLite's one writer, by operation (transaction: a batch of handlers, a sync route's or a tick's).",
        "op",
        &turns.held,
    );
}

fn labelled_histograms(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    histograms: &[switchyard_store::TurnHistogram],
) {
    header(out, name, help, "histogram");
    for histogram in histograms {
        histogram_series(
            out,
            name,
            Some((label, histogram.label)),
            &switchyard_store::TURN_BUCKETS,
            histogram.counts.iter().copied(),
            histogram.sum.as_secs_f64(),
        );
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_keep_values_apart_and_overflow_to_other() {
        static C: LabeledCounter = LabeledCounter::new("t_total", "t", "method");
        C.inc("chat.postMessage");
        C.inc("chat.postMessage");
        C.inc("chat.update");
        assert_eq!(C.get("chat.postMessage"), 2);
        assert_eq!(C.get("chat.update"), 1);
        for i in 0..MAX_LABELS + 5 {
            C.inc(&format!("m{i}"));
        }
        let mut out = String::new();
        C.render(&mut out);
        assert!(
            out.contains("t_total{method=\"chat.postMessage\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("t_total{method=\"other\"} 7\n"), "{out}");
    }

    #[test]
    fn concurrent_first_use_of_a_label_counts_every_increment_once() {
        static C: LabeledCounter = LabeledCounter::new("r_total", "r", "app");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    for i in 0..1000 {
                        C.inc(if i % 2 == 0 { "a" } else { "b" });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((C.get("a"), C.get("b")), (4000, 4000));
        let mut out = String::new();
        C.render(&mut out);
        assert_eq!(out.matches("app=\"a\"").count(), 1, "{out}");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        static H: Histogram = Histogram::new("h_seconds", "h");
        H.observe(Duration::from_micros(500));
        H.observe(Duration::from_millis(30));
        H.observe(Duration::from_secs(9));
        let mut out = String::new();
        H.render(&mut out);
        assert!(out.contains("h_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("h_seconds_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("h_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("h_seconds_count 3\n"), "{out}");
    }

    #[test]
    fn writer_turns_render_one_labelled_histogram_each() {
        use switchyard_store::{TURN_BUCKETS, TurnHistogram, WriterTurns};
        let mut counts = [0; TURN_BUCKETS.len() + 1];
        (counts[0], counts[TURN_BUCKETS.len()]) = (2, 1);
        let held = TurnHistogram {
            label: "outbox claim",
            counts,
            sum: Duration::from_secs(6),
        };
        let turns = WriterTurns {
            waited: Vec::new(),
            held: vec![held],
        };
        let mut out = String::new();
        render_writer_turns(&mut out, &turns);
        let name = "switchyard_store_writer_hold_seconds";
        for line in [
            format!("{name}_bucket{{op=\"outbox claim\",le=\"0.0001\"}} 2\n"),
            format!("{name}_bucket{{op=\"outbox claim\",le=\"+Inf\"}} 3\n"),
            format!("{name}_sum{{op=\"outbox claim\"}} 6\n"),
            format!("{name}_count{{op=\"outbox claim\"}} 3\n"),
            "# TYPE switchyard_store_writer_wait_seconds histogram\n".to_string(),
        ] {
            assert!(out.contains(&line), "{line} in\n{out}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
