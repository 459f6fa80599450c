//! Slowing down repeated authentication failures from one IP address: after a few failures
//! each further attempt waits longer (doubling, up to 10 s), so password guessing is slow
//! while a user who mistyped once notices nothing. Entries expire after 15 minutes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_DELAY: Duration = Duration::from_secs(10);
const MAX_ENTRIES: usize = 100_000;

pub struct AuthThrottle {
    free_failures: u32,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle::new(5)
    }
}

impl AuthThrottle {
    /// `free_failures` failures are not delayed.
    pub fn new(free_failures: u32) -> Self {
        AuthThrottle {
            free_failures,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long to wait before answering the next attempt from `ip`.
    pub fn delay_for(&self, ip: IpAddr) -> Duration {
        let map = self.map();
        match map.get(&ip) {
            Some(&(n, at)) if n >= self.free_failures && at.elapsed() < FORGET_AFTER => {
                let excess = (n - self.free_failures).min(10);
                (Duration::from_millis(250) * 2u32.pow(excess)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = self.map();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed() < FORGET_AFTER);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
    }

    pub fn record_success(&self, ip: IpAddr) {
        self.map().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_free_failures_and_reset_on_success() {
        let t = AuthThrottle::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(t.delay_for(ip), Duration::ZERO);
        t.record_failure(ip);
        t.record_failure(ip);
        assert_eq!(t.delay_for(ip), Duration::from_millis(250));
        t.record_failure(ip);
        assert_eq!(t.delay_for(ip), Duration::from_millis(500));
        for _ in 0..20 {
            t.record_failure(ip);
        }
        assert_eq!(t.delay_for(ip), MAX_DELAY);
        t.record_success(ip);
        assert_eq!(t.delay_for(ip), Duration::ZERO);
    }
}
