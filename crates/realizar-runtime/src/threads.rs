//! The default thread count: physical cores.

/// Physical cores of this machine: distinct `(physical id, core id)` pairs of /proc/cpuinfo,
/// else [`std::thread::available_parallelism`], else 1. Never more than the logical CPUs
/// available to this process.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(text) => match count_cores(&text) {
            Some(n) => n.min(logical).max(1),
            None => logical,
        },
        Err(_) => logical,
    }
}

/// Counts distinct `(physical id, core id)` pairs in the text of /proc/cpuinfo.
pub fn count_cores(cpuinfo: &str) -> Option<usize> {
    let mut seen = std::collections::BTreeSet::new();
    for block in cpuinfo.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        if let Some(core) = field("core id") {
            seen.insert((field("physical id").unwrap_or_default(), core));
        }
    }
    (!seen.is_empty()).then_some(seen.len())
}

/// The most compute threads a model may be given (a request beyond is an error, not a
/// million threads).
pub const MAX_THREADS: usize = 1024;

/// Checks a requested thread count: 1 to [`MAX_THREADS`].
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if (1..=MAX_THREADS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between 1 and {MAX_THREADS}, got {n}"))
    }
}

/// The thread count to use: `requested` when given and positive, else [`physical_cores`].
pub fn resolve_threads(requested: Option<usize>) -> usize {
    match requested {
        Some(n) if n > 0 => n,
        _ => physical_cores(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_cores_not_hyperthreads() {
        let text = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\n\
                    processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                    processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n\n\
                    processor\t: 3\nphysical id\t: 1\ncore id\t: 0\n";
        assert_eq!(count_cores(text), Some(3));
        assert_eq!(count_cores("processor : 0\n"), None);
    }

    #[test]
    fn explicit_threads_win() {
        assert_eq!(resolve_threads(Some(3)), 3);
        assert!(resolve_threads(None) >= 1);
        assert!(resolve_threads(Some(0)) >= 1);
    }
}
