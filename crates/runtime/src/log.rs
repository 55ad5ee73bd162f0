//! The CRI container log format, written by the shim: one record per line,
//! `<RFC3339 UTC, nanoseconds> <stdout|stderr> <F|P> <content>\n`. A line longer than
//! [`MAX_LINE`] is split into `P` (partial) records closed by an `F` record, like
//! containerd; content left without a newline when the stream ends is written as `F`.

use std::io::Write;

use chrono::{DateTime, Utc};

/// Longest content of one record; longer lines are split into partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Formats a timestamp as the CRI log format does: `2026-01-02T15:04:05.999999999Z`.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Formats one record (content must not contain a newline).
pub fn format_record(t: DateTime<Utc>, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(format_timestamp(t).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Splits one stream's bytes into records, keeping an unterminated tail between calls.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        Self::with_max_line(stream, MAX_LINE)
    }

    pub fn with_max_line(stream: Stream, max_line: usize) -> Self {
        LineSplitter {
            stream,
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Feeds a chunk read from the stream; returns the formatted records it completes.
    pub fn push(&mut self, chunk: &[u8], now: DateTime<Utc>) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                out.extend(format_record(now, self.stream, false, &self.pending));
                self.pending.clear();
            } else {
                self.pending.push(b);
                if self.pending.len() >= self.max_line {
                    out.extend(format_record(now, self.stream, true, &self.pending));
                    self.pending.clear();
                }
            }
        }
        out
    }

    /// The stream ended: whatever is pending becomes a final record.
    pub fn finish(&mut self, now: DateTime<Utc>) -> Vec<u8> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let out = format_record(now, self.stream, false, &self.pending);
        self.pending.clear();
        out
    }
}

/// Writes records to the log file; shared by the stdout and stderr pumps so that each
/// record is written whole with one `write_all` (the file is opened with O_APPEND).
pub fn write_records(
    file: &std::sync::Mutex<std::fs::File>,
    records: &[u8],
) -> std::io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
    f.write_all(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 15, 4, 5).unwrap()
            + chrono::Duration::nanoseconds(999_999_999)
    }

    #[test]
    fn timestamp_has_nanoseconds() {
        assert_eq!(format_timestamp(t()), "2026-01-02T15:04:05.999999999Z");
        let whole = Utc.with_ymd_and_hms(2026, 1, 2, 15, 4, 5).unwrap();
        assert_eq!(format_timestamp(whole), "2026-01-02T15:04:05.000000000Z");
    }

    #[test]
    fn full_lines_across_chunks() {
        let mut s = LineSplitter::new(Stream::Stdout);
        assert!(s.push(b"hel", t()).is_empty());
        let out = s.push(b"lo\nworld\n", t());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-02T15:04:05.999999999Z stdout F hello\n2026-01-02T15:04:05.999999999Z stdout F world\n"
        );
        assert!(s.finish(t()).is_empty());
    }

    #[test]
    fn long_lines_become_partial_records() {
        let mut s = LineSplitter::with_max_line(Stream::Stderr, 4);
        let out = String::from_utf8(s.push(b"abcdefghij\n", t())).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(" stderr P abcd"));
        assert!(lines[1].ends_with(" stderr P efgh"));
        assert!(lines[2].ends_with(" stderr F ij"));
    }

    #[test]
    fn unterminated_tail_is_final_at_eof() {
        let mut s = LineSplitter::new(Stream::Stdout);
        assert!(s.push(b"no newline", t()).is_empty());
        let out = String::from_utf8(s.finish(t())).unwrap();
        assert!(out.ends_with(" stdout F no newline\n"));
    }

    #[test]
    fn empty_line_is_a_record() {
        let mut s = LineSplitter::new(Stream::Stdout);
        let out = String::from_utf8(s.push(b"\n", t())).unwrap();
        assert_eq!(out, "2026-01-02T15:04:05.999999999Z stdout F \n");
    }
}
