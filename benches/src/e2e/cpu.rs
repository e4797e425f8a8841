//! CPU time of processes, from Linux's `/proc/<pid>/stat`.
//!
//! A cluster's CPU use over a run is the sum of its processes' user + system time at the end
//! minus at the start. A process killed during the run (the leader in a failover run) is
//! sampled just before it is killed and keeps that last figure. The load generator's CPU is
//! the growth of this process's "waited-for children" time across waiting for it.

use std::process::Command;

/// Fields after the command name (which is in parentheses and may hold spaces): field 3 of
/// `proc(5)` is at index 0, so field N is at index N - 3.
fn fields_after_command(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

fn sum_fields(stat: &str, first: usize, second: usize) -> Option<u64> {
    let fields = fields_after_command(stat)?;
    let a: u64 = fields.get(first - 3)?.parse().ok()?;
    let b: u64 = fields.get(second - 3)?.parse().ok()?;
    Some(a + b)
}

/// User + system time (`utime` + `stime`, fields 14 and 15) in clock ticks.
pub(crate) fn own_ticks(stat: &str) -> Option<u64> {
    sum_fields(stat, 14, 15)
}

/// User + system time of waited-for children (`cutime` + `cstime`, fields 16 and 17).
pub(crate) fn children_ticks(stat: &str) -> Option<u64> {
    sum_fields(stat, 16, 17)
}

/// `/proc/<pid>/stat`, if the process (or its zombie) is still there.
pub(crate) fn read_stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, Linux's usual value, if that fails).
pub(crate) fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|&ticks| ticks > 0.0)
        .unwrap_or(100.0)
}

/// CPU time of a fixed set of processes between [`CpuMeter::start`] and the last
/// [`CpuMeter::sample`].
#[derive(Debug)]
pub(crate) struct CpuMeter {
    pids: Vec<u32>,
    first: Vec<Option<u64>>,
    last: Vec<Option<u64>>,
}

impl CpuMeter {
    /// Takes the first sample of `pids`.
    pub(crate) fn start(pids: Vec<u32>) -> Self {
        let first: Vec<Option<u64>> = pids
            .iter()
            .map(|&pid| read_stat(pid).as_deref().and_then(own_ticks))
            .collect();
        Self {
            last: first.clone(),
            first,
            pids,
        }
    }

    /// Updates every process still readable; a vanished one keeps its last figure.
    pub(crate) fn sample(&mut self) {
        for (pid, last) in self.pids.iter().zip(&mut self.last) {
            if let Some(ticks) = read_stat(*pid).as_deref().and_then(own_ticks) {
                *last = Some(ticks);
            }
        }
    }

    /// Ticks used between the first and the last sample, summed over every process measured
    /// both times; `None` if none was.
    pub(crate) fn used_ticks(&self) -> Option<u64> {
        self.first
            .iter()
            .zip(&self.last)
            .filter_map(|(first, last)| Some(last.as_ref()?.saturating_sub(*first.as_ref()?)))
            .reduce(|a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line, with a command name holding a space and a parenthesis.
    const STAT: &str = "4242 (kvd (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                        750 125 40 2 20 0 9 0 123456 1000000 500 18446744073709551615";

    #[test]
    fn parses_own_and_children_times() {
        assert_eq!(own_ticks(STAT), Some(875));
        assert_eq!(children_ticks(STAT), Some(42));
        assert_eq!(own_ticks("garbage"), None);
        assert_eq!(own_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn meters_this_process() {
        let mut meter = CpuMeter::start(vec![std::process::id(), u32::MAX]);
        // Burn a little CPU so the figure can move (it may still round to 0 ticks).
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        meter.sample();
        assert!(meter.used_ticks().is_some());
        assert_eq!(CpuMeter::start(vec![u32::MAX]).used_ticks(), None);
        assert!(ticks_per_second() > 0.0);
    }
}
