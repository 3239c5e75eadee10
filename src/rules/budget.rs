//! A request's allowance of work (SPEC §7): how many records it may read
//! (list candidates, relation and back-relation hops, `@collection`
//! lookups, rule checks on related records) and how many records it may
//! embed through `expand`, and how long it may run. Filters, rules, expand, lists, realtime delivery
//! and batch all draw from the one `Budget` their request carries in
//! [`super::Data`], so no single request — however its filter, expand or
//! relations are shaped — costs more than a bounded amount of work.
//!
//! A request carries its budget in its `RequestInfo` (batch sub-requests
//! share their batch's); a realtime connection gets a fresh one per change.
//!
//! Running out does not stop evaluation at once (the evaluator is pure and
//! answers booleans); every further lookup resolves to nothing and the
//! request's owner turns [`Budget::check`] into a 400 that names what to
//! narrow. Partial answers are never sent.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// The limits a [`Budget`] starts from (settings `budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Records a request may read.
    pub records: u64,
    /// Records a request may embed through `expand`.
    pub expand: u64,
    /// Bytes (as JSON, estimated) its answer may carry: the records it
    /// returns and the ones it embeds.
    pub output_bytes: u64,
    /// Wall-clock time from the request's start (time spent waiting for a
    /// work slot included): records and bytes bound the work, this bounds
    /// what they cannot see (a slow disk, a crowded machine, a costly regex
    /// per record). PocketBase's `--queryTimeout` is the same idea.
    pub time: Duration,
}

impl BudgetLimits {
    /// The 400 of a spent record budget (also what a realtime subscription
    /// that ran over gets).
    pub fn records_error(&self) -> ApiError {
        ApiError::bad_request(format!(
            "Budget exceeded: this request would read more than {} records. Narrow it: \
             filter on indexed fields, use fewer relation or back-relation terms \
             (x.y, x_via_y), or expand less.",
            self.records
        ))
    }
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            records: 200_000,
            expand: 5_000,
            output_bytes: 64 << 20,
            time: Duration::from_secs(30),
        }
    }
}

/// What ran out first (`exhausted`): nothing yet, records, expand.
const FRESH: u8 = 0;
const RECORDS: u8 = 1;
const EXPAND: u8 = 2;
const OUTPUT: u8 = 3;
const TIME: u8 = 4;

/// The clock is read once per this many records read (a power of two):
/// often enough to stop within a few milliseconds of the deadline, rarely
/// enough to cost nothing per record.
const CLOCK_EVERY: u64 = 1024;

/// One request's remaining allowance. Atomic counters (relaxed: they only
/// count) so a request's `RequestInfo` can carry it and be cloned.
#[derive(Debug)]
pub struct Budget {
    limits: BudgetLimits,
    records: AtomicU64,
    expand: AtomicU64,
    output_bytes: AtomicU64,
    exhausted: AtomicU8,
    deadline: Instant,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(BudgetLimits::default())
    }
}

impl Budget {
    pub fn new(limits: BudgetLimits) -> Budget {
        Budget {
            limits,
            records: AtomicU64::new(limits.records),
            expand: AtomicU64::new(limits.expand),
            output_bytes: AtomicU64::new(limits.output_bytes),
            exhausted: AtomicU8::new(FRESH),
            deadline: Instant::now() + limits.time,
        }
    }

    /// Takes `n` from `counter`; the counter's value before, or `None`
    /// (and the budget marked spent by `what`) if `n` is not left.
    fn take(&self, counter: &AtomicU64, n: u64, what: u8) -> Option<u64> {
        if self.exhausted.load(Relaxed) != FRESH {
            return None;
        }
        let taken = counter.fetch_update(Relaxed, Relaxed, |left| left.checked_sub(n)).ok();
        if taken.is_none() {
            self.spend(what);
        }
        taken
    }

    fn spend(&self, what: u8) {
        let _ = self.exhausted.compare_exchange(FRESH, what, Relaxed, Relaxed);
    }

    /// Draws `n` record reads; false once the budget is spent or the
    /// request's time is up (the caller must then stop reading).
    pub fn read(&self, n: u64) -> bool {
        let Some(before) = self.take(&self.records, n, RECORDS) else {
            return false;
        };
        // Each time the count crosses a multiple of CLOCK_EVERY.
        if (before / CLOCK_EVERY) != ((before - n) / CLOCK_EVERY) && Instant::now() >= self.deadline {
            self.spend(TIME);
            return false;
        }
        true
    }

    /// Draws one embedded record of about `bytes`; false once the expand
    /// budget is spent.
    pub fn embed(&self, bytes: u64) -> bool {
        self.take(&self.expand, 1, EXPAND).is_some() && self.output(bytes)
    }

    /// Draws `bytes` of answer; false once the answer would be too large.
    pub fn output(&self, bytes: u64) -> bool {
        self.take(&self.output_bytes, bytes, OUTPUT).is_some()
    }

    /// Whether the budget ran out.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted.load(Relaxed) != FRESH
    }

    fn records_error(&self) -> ApiError {
        self.limits.records_error()
    }

    /// `Ok` while the budget holds; otherwise the 400 the request answers.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.exhausted.load(Relaxed) {
            FRESH => Ok(()),
            RECORDS => Err(self.records_error()),
            EXPAND => Err(ApiError::bad_request(format!(
                "Budget exceeded: this request would expand more than {} records. Narrow it: \
                 expand fewer or shallower relations, or lower perPage.",
                self.limits.expand
            ))),
            TIME => Err(ApiError::bad_request(format!(
                "Budget exceeded: this request ran longer than {} s. Narrow it: filter on \
                 indexed fields, use fewer relation or back-relation terms, or try again \
                 when the server is less busy.",
                self.limits.time.as_secs()
            ))),
            _ => Err(ApiError::bad_request(format!(
                "Budget exceeded: this answer would be larger than {} bytes. Narrow it: \
                 lower perPage, pick fewer fields, or expand less.",
                self.limits.output_bytes
            ))),
        }
    }
}

/// About how many bytes `v` takes as JSON (strings and keys by length,
/// other scalars a few bytes): what an embedded record adds to an answer,
/// without serialising it. Iterative, so deep documents cannot overflow.
pub fn json_size(v: &serde_json::Value) -> u64 {
    use serde_json::Value;
    let mut total = 0u64;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::String(s) => s.len() as u64 + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len() as u64
            }
            Value::Object(map) => {
                for (k, item) in map {
                    total += k.len() as u64 + 4;
                    stack.push(item);
                }
                2
            }
            _ => 8,
        };
    }
    total
}
