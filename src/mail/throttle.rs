//! How many auth mails of one kind one address got lately: the
//! per-recipient throttle of the mail-sending auth flows
//! (`limits.mailsPerAddress` per `limits.mailWindow` seconds).
//!
//! The per-address rate limits bound what one *sender* may ask for; this
//! bounds what one *mailbox* receives, so a stranger asking from many
//! addresses cannot flood it. PocketBase does the same per record (one
//! verification or reset mail per 2 minutes, in its in-memory store); here
//! the key is the recipient's address, lowercased, so an address in two
//! auth collections (or the new address of an email change) is one
//! mailbox. A throttled request is answered like a sent one (the flows
//! never reveal whether an account exists) and sends nothing.
//!
//! **Sliding window**: the send times of the last `max` mails per key. In
//! memory only: a restart forgets them, as PocketBase's store does.
//! **Memory**: a key exists only for an address that was mailed; the
//! table is swept of keys with nothing inside the window when it reaches
//! its sweep size (at least [`SWEEP_AT`], then twice what a sweep left, so
//! sweeps cost O(1) per new key), and past [`MAX_KEYS`] live keys new
//! recipients are refused (fail closed: mail is the resource protected).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys at which a sweep runs.
const SWEEP_AT: usize = 10_000;
/// Most recipients tracked at once.
pub const MAX_KEYS: usize = 100_000;

/// The auth mails, each throttled on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    Verification,
    PasswordReset,
    EmailChange,
    Otp,
    /// New-origin login alerts (whoever has the password could otherwise
    /// mail the owner once per made-up browser).
    AuthAlert,
}

/// Recent send times per (kind, recipient).
#[derive(Default)]
pub struct RecipientThrottle {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sent: HashMap<(MailKind, String), VecDeque<Instant>>,
    /// Size at which the next sweep runs (0 = [`SWEEP_AT`]).
    sweep_at: usize,
    /// When the last sweep ran: a full table is swept at most once a second.
    last_sweep: Option<Instant>,
}

impl RecipientThrottle {
    /// Whether one more mail of `kind` may go to `to` now (at most `max`
    /// per `window`); if so, it is counted.
    pub fn admit(&self, kind: MailKind, to: &str, max: u32, window: Duration) -> bool {
        self.admit_at(kind, to, max, window, Instant::now())
    }

    fn admit_at(&self, kind: MailKind, to: &str, max: u32, window: Duration, now: Instant) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner {
            sent,
            sweep_at,
            last_sweep,
        } = &mut *inner;
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < window;
        let key = (kind, to.trim().to_lowercase());
        if !sent.contains_key(&key) {
            let due = sent.len() >= (*sweep_at).max(SWEEP_AT);
            let full = sent.len() >= MAX_KEYS
                && last_sweep.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if due || full {
                sent.retain(|_, times| times.back().is_some_and(fresh));
                *sweep_at = (sent.len() * 2).max(SWEEP_AT);
                *last_sweep = Some(now);
            }
            if sent.len() >= MAX_KEYS {
                tracing::warn!("mail throttle full: refusing mail to a new recipient");
                return false;
            }
        }
        let times = sent.entry(key).or_default();
        while times.front().is_some_and(|t| !fresh(t)) {
            times.pop_front();
        }
        if times.len() >= max as usize {
            return false;
        }
        times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_kind_and_recipient_in_a_sliding_window() {
        let t = RecipientThrottle::default();
        let w = Duration::from_secs(600);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for i in 0..3 {
            assert!(t.admit_at(MailKind::PasswordReset, "Ann@Example.com", 3, w, at(i)));
        }
        assert!(
            !t.admit_at(MailKind::PasswordReset, "ann@example.com ", 3, w, at(10)),
            "same mailbox"
        );
        assert!(
            t.admit_at(MailKind::Verification, "ann@example.com", 3, w, at(10)),
            "other kind"
        );
        assert!(
            t.admit_at(MailKind::PasswordReset, "bob@example.com", 3, w, at(10)),
            "other address"
        );
        assert!(!t.admit_at(MailKind::PasswordReset, "ann@example.com", 3, w, at(599)));
        assert!(
            t.admit_at(MailKind::PasswordReset, "ann@example.com", 3, w, at(600)),
            "the first left the window"
        );
        assert!(!t.admit_at(MailKind::PasswordReset, "ann@example.com", 3, w, at(600)));
    }

    #[test]
    fn memory_is_bounded() {
        let t = RecipientThrottle::default();
        let w = Duration::from_secs(60);
        let start = Instant::now();
        for i in 0..SWEEP_AT {
            assert!(t.admit_at(MailKind::Otp, &format!("u{i}@example.com"), 1, w, start));
        }
        // All old: the sweep empties the table.
        assert!(t.admit_at(MailKind::Otp, "late@example.com", 1, w, start + w));
        assert_eq!(t.inner.lock().unwrap().sent.len(), 1);
    }
}
