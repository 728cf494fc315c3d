//! How numbers, times and sizes read in the tables.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `13:04:59` (UTC).
pub fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// `2026-11-21 13:04:59 UTC`.
pub fn date_time(ms: u64) -> String {
    let days = (ms / 1000 / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {} UTC", clock(ms))
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `5 s ago`, `3 min ago`, `2 h ago`.
pub fn ago(ms: u64, now: u64) -> String {
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A duration in seconds, `1 h 02 min`, `3 min 05 s`, `12 s`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{} h {:02} min", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{secs} s")
    }
}

/// CPUs with three decimals: `0.375`.
pub fn cpus(value: f64) -> String {
    format!("{value:.3}")
}

/// Bytes as MiB or GiB.
pub fn bytes(value: u64) -> String {
    mib(value as f64 / (1024.0 * 1024.0))
}

/// MiB as MiB or GiB.
pub fn mib(value: f64) -> String {
    if value >= 10.0 * 1024.0 {
        format!("{:.1} GiB", value / 1024.0)
    } else if value >= 100.0 {
        format!("{value:.0} MiB")
    } else {
        format!("{value:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_clocks() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(date_time(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
        assert_eq!(ago(1_000, 66_000), "1 min ago");
        assert_eq!(duration(3_725_000), "1 h 02 min");
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(16 * 1024 * 1024), "16.0 MiB");
        assert_eq!(mib(512.0), "512 MiB");
        assert_eq!(mib(16_384.0), "16.0 GiB");
    }
}
