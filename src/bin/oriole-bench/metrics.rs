//! Measurements from /proc: CPU time and resident memory of a process (the server under test
//! and the generator itself), machine-wide CPU, kernel slab memory; and latency percentiles.

use std::time::Instant;

/// Linux reports process CPU times in USER_HZ ticks, 100 per second on every architecture.
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of a process in seconds (`None` if it is gone).
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based over the whole line).
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// VmRSS in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Kernel slab memory (sockets, TCP buffers' metadata, …) in KiB.
pub fn slab_kib() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    m.lines()
        .find(|l| l.starts_with("Slab:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Busy CPU seconds of the whole machine (all cores).
pub fn machine_busy_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| x)
        .sum();
    Some(busy / TICKS_PER_SEC)
}

/// A snapshot of CPU counters, to subtract.
#[derive(Clone, Copy)]
pub struct CpuSnap {
    pub at: Instant,
    pub server: f64,
    pub me: f64,
    pub machine: f64,
}

impl CpuSnap {
    pub fn take(server_pid: Option<&str>) -> CpuSnap {
        CpuSnap {
            at: Instant::now(),
            server: server_pid.and_then(cpu_secs).unwrap_or(0.0),
            me: cpu_secs("self").unwrap_or(0.0),
            machine: machine_busy_secs().unwrap_or(0.0),
        }
    }
}

/// CPU used between two snapshots.
pub struct CpuUse {
    pub wall: f64,
    /// Server CPU seconds.
    pub server: f64,
    /// Generator CPU seconds.
    pub me: f64,
    /// CPU seconds used by every other process on the machine.
    pub other: f64,
}

pub fn cpu_between(a: &CpuSnap, b: &CpuSnap) -> CpuUse {
    let server = (b.server - a.server).max(0.0);
    let me = (b.me - a.me).max(0.0);
    CpuUse {
        wall: b.at.duration_since(a.at).as_secs_f64(),
        server,
        me,
        other: (b.machine - a.machine - server - me).max(0.0),
    }
}

/// The quantiles written into a `RESULT` line's `cdf` field (for the latency CDF plot).
const CDF_QUANTILES: &[f64] = &[
    0.01, 0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 0.99, 0.999,
];

/// Percentiles of microsecond samples.
pub struct Percentiles {
    pub count: usize,
    pub p50: u32,
    pub p99: u32,
    pub max: u32,
    /// `quantile:milliseconds` pairs joined by commas, ending with `1:max`: a compact CDF.
    pub cdf: String,
}

pub fn percentiles(mut v: Vec<u32>) -> Percentiles {
    v.sort_unstable();
    let at = |q: f64| -> u32 {
        if v.is_empty() {
            0
        } else {
            v[((q * v.len() as f64) as usize).min(v.len() - 1)]
        }
    };
    let max = v.last().copied().unwrap_or(0);
    let mut cdf: Vec<String> = CDF_QUANTILES
        .iter()
        .map(|&q| format!("{q}:{}", ms(at(q))))
        .collect();
    cdf.push(format!("1:{}", ms(max)));
    Percentiles {
        count: v.len(),
        p50: at(0.50),
        p99: at(0.99),
        max,
        cdf: cdf.join(","),
    }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(us: u32) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let p = percentiles((1..=100).rev().collect());
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 51, 100, 100));
        assert!(p.cdf.starts_with("0.01:0.00,0.05:0.01,"), "{}", p.cdf);
        assert!(p.cdf.ends_with(",0.999:0.10,1:0.10"), "{}", p.cdf);
        let e = percentiles(Vec::new());
        assert_eq!((e.count, e.p50, e.max), (0, 0, 0));
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_secs("self").is_some());
        assert!(rss_kib("self").unwrap_or(0) > 0);
        assert!(cpu_secs("nonexistent").is_none());
    }
}
