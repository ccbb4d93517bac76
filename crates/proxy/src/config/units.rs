//! Humane durations (`"250ms"`, `"30s"`, `"5m"`) and sizes (`"64KiB"`, `"10MiB"`).

use std::time::Duration;

pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. \"250ms\", \"30s\", \"5m\""))
}

pub fn size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("`{s}` is not a size; write e.g. \"64KiB\", \"10MiB\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert!(duration("5 parsecs").unwrap_err().contains("5 parsecs"));
        assert!(duration("").is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(size("64KiB").unwrap(), 64 * 1024);
        assert_eq!(size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(size("100").unwrap(), 100);
        assert!(size("lots").unwrap_err().contains("lots"));
    }
}
