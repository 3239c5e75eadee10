//! Caps on what one client address may hold open at a time: HTTP
//! connections and realtime connections (WebSocket and SSE). No actix
//! types: `api::bounds` takes an HTTP lease when a connection is accepted
//! (or, behind a trusted proxy, when its request names the client), the
//! realtime handlers take a realtime lease when a stream opens; dropping
//! the lease (the connection's end) gives the slot back.
//!
//! Why counts and not rates: a slow client costs a socket, a file
//! descriptor and a task for as long as it stays, however few requests it
//! sends. 2,000 WebSocket connections from one address were accepted in a
//! second, and 1,100 slow bodies made the server unreachable; a per-address
//! count bounds what one address can pin, whatever its pace.
//!
//! Keys are the rate limiter's: the address, IPv6 by /64. A count exists
//! only while a connection holds it, so the table is as large as the set
//! of connected addresses (bounded by the server's connection cap).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::ratelimit::ip_key;

/// Open connections per address, for one kind of connection.
///
/// A std `Mutex`: it is held for a hash-map update only, never across an
/// await, and taken once per connection (not per request).
#[derive(Clone, Default)]
pub struct AddressCounts {
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl AddressCounts {
    /// One more connection from `ip`, if it holds fewer than `cap`.
    pub fn try_acquire(&self, ip: IpAddr, cap: u32) -> Option<Lease> {
        let key = ip_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= cap {
            if *n == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Lease {
            counts: self.counts.clone(),
            key,
        })
    }

    /// Connections `ip` holds now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&ip_key(ip)).copied().unwrap_or(0)
    }

    /// Addresses with at least one connection.
    pub fn addresses(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One held connection slot; dropping it gives the slot back.
pub struct Lease {
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
    key: IpAddr,
}

impl Lease {
    /// Whether this slot counts for `ip`.
    pub fn is_for(&self, ip: IpAddr) -> bool {
        self.key == ip_key(ip)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The caps' counters, shared by every worker (a cheap-clone handle).
#[derive(Clone, Default)]
pub struct Caps {
    /// Open HTTP connections (`limits.connectionsPerAddress`).
    pub http: AddressCounts,
    /// Open WebSocket and SSE streams (`limits.realtimePerAddress`).
    pub realtime: AddressCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_count_per_address_and_give_back_on_drop() {
        let counts = AddressCounts::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| counts.try_acquire(a, 3).expect("under the cap"))
            .collect();
        assert!(counts.try_acquire(a, 3).is_none(), "over the cap");
        assert!(counts.try_acquire(b, 3).is_some(), "another address is not affected");
        assert_eq!(counts.count(a), 3);
        drop(held);
        assert_eq!(counts.count(a), 0);
        assert_eq!(counts.addresses(), 0, "empty entries are removed");
        assert!(counts.try_acquire(a, 0).is_none());
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_by_64() {
        let counts = AddressCounts::default();
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let other: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let _l = counts.try_acquire(one, 1).unwrap();
        assert!(counts.try_acquire(other, 1).is_none(), "same /64");
        assert!(_l.is_for(other));
    }
}
