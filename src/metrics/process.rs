//! What the process itself used (CPU, memory, waits), read from the
//! kernel for `/metrics`, the summary line and benchmarks.

/// What the process itself used, for the summary line and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessUsage {
    /// User plus system CPU seconds.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the kernel (socket reads and
    /// writes, page faults): tells whether a change should aim at our code
    /// or at the number of system calls.
    pub system_seconds: f64,
    /// Peak resident memory (VmHWM) in MiB.
    pub peak_rss_mib: f64,
    /// Resident memory now (VmRSS), in bytes.
    pub resident_bytes: u64,
    /// Minor page faults: pages the kernel had to map (and clear) for the
    /// process, a cost that shows in `system_seconds` and not in profiles
    /// of our code.
    pub page_faults: u64,
    /// Times a thread of the process gave up its core to wait (for a
    /// socket, a channel, a lock) and was woken again. On a machine it
    /// shares with MySQL, each wake-up can take a core from MySQL and
    /// leave its caches cold.
    pub waits: u64,
    /// Times a thread of the process was preempted.
    pub preemptions: u64,
}

impl ProcessUsage {
    /// Reads the figures (Linux; zero elsewhere).
    pub fn read() -> ProcessUsage {
        // VmHWM rather than getrusage's ru_maxrss: the latter also counts the
        // parent's memory between fork and exec.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let peak_kib = kib("VmHWM:") as f64;
        // utime and stime are fields 14 and 15 of /proc/self/stat, in clock
        // ticks; the command name (field 2) may hold spaces, so count from
        // the closing parenthesis.
        // minflt is field 10.
        let (user, system, faults) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let faults = f.get(7)?.parse::<u64>().ok()?;
                let user = f.get(11)?.parse::<f64>().ok()?;
                let system = f.get(12)?.parse::<f64>().ok()?;
                Some((user / 100.0, system / 100.0, faults))
            })
            .unwrap_or((0.0, 0.0, 0));
        // Summed over every thread, as only getrusage does (/proc/self/status
        // counts the main thread's alone).
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is writable memory of the right type, which
        // getrusage fills in when it returns 0; zeroed, it is a valid
        // rusage either way.
        let usage = unsafe {
            libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
            usage.assume_init()
        };
        ProcessUsage {
            cpu_seconds: user + system,
            system_seconds: system,
            page_faults: faults,
            peak_rss_mib: peak_kib / 1024.0,
            resident_bytes: kib("VmRSS:") * 1024,
            waits: usage.ru_nvcsw.max(0) as u64,
            preemptions: usage.ru_nivcsw.max(0) as u64,
        }
    }
}
