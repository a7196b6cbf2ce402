//! What the operator process costs, read from `/proc` as `ps` would.

use anyhow::Context;

/// Resident memory and CPU time of one process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

impl Sample {
    pub fn rss_mib(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// `VmRSS` from `/proc/<pid>/status` and `utime + stime` from `/proc/<pid>/stat`.
pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (has the operator exited?)"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let rest = stat.rsplit_once(')').context("malformed /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Sample {
        rss_bytes: rss_kib * 1024,
        cpu_seconds: ticks as f64 / hz,
    })
}
