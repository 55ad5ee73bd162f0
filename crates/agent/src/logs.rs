//! Reading container logs (the CRI format the shim writes): parsing records, joining
//! partial lines, and `kubectl logs` options — tail, since, timestamps, limit-bytes —
//! applied to a log file, plus the tail kubelet uses as a termination message
//! (FallbackToLogsOnError). Following a growing file is the agent's business
//! ([`crate::manager`]); everything here works on bytes and is pure apart from reading.

use std::path::Path;

use chrono::{DateTime, Utc};

/// One CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: DateTime<Utc>,
    /// The timestamp as written.
    pub time_str: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses `<time> <stream> <P|F> <content>` (without the newline).
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time_str = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or(b"");
    let time = DateTime::parse_from_rfc3339(time_str)
        .ok()?
        .with_timezone(&Utc);
    Some(Record {
        time,
        time_str,
        stream,
        partial: tag.first() == Some(&b'P'),
        content,
    })
}

/// What `kubectl logs` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub tail_lines: Option<i64>,
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<i64>,
}

/// One output line (a full line, partial records joined), ready to send.
fn render(first: &Record, content: &[u8], timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 40);
    if timestamps {
        out.extend_from_slice(first.time_str.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Turns log bytes into output lines (`since` applied, partial records joined). A
/// trailing incomplete line is left out; its length is returned as the second value so a
/// follower can keep it for later.
pub fn lines(data: &[u8], opts: &LogOptions) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut pending: Option<(Vec<u8>, Vec<u8>, DateTime<Utc>)> = None;
    let mut consumed = 0;
    let mut start = 0;
    while let Some(nl) = data[start..].iter().position(|b| *b == b'\n') {
        let line = &data[start..start + nl];
        start += nl + 1;
        let Some(r) = parse_record(line) else {
            consumed = start;
            continue;
        };
        let (head, mut content, time) = pending
            .take()
            .unwrap_or_else(|| (line.to_vec(), Vec::new(), r.time));
        content.extend_from_slice(r.content);
        if r.partial {
            pending = Some((head, content, time));
            continue;
        }
        consumed = start;
        if opts.since.is_some_and(|s| time < s) {
            continue;
        }
        let first = parse_record(&head).unwrap_or(r.clone());
        out.push(render(&first, &content, opts.timestamps));
    }
    (out, data.len() - consumed)
}

/// The log as `kubectl logs` shows it: `since`, then the last `tail_lines`, then at most
/// `limit_bytes`.
pub fn select(data: &[u8], opts: &LogOptions) -> Vec<u8> {
    let (mut ls, _) = lines(data, opts);
    if let Some(n) = opts.tail_lines.filter(|n| *n >= 0) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if ls.len() > n {
            ls.drain(..ls.len() - n);
        }
    }
    let mut out: Vec<u8> = ls.concat();
    if let Some(limit) = opts.limit_bytes.filter(|n| *n >= 0) {
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    out
}

/// kubelet's FallbackToLogsOnError message: the last 80 lines, at most 2048 bytes.
pub fn termination_tail(path: &Path) -> Option<String> {
    let data = std::fs::read(path).ok()?;
    let out = select(
        &data,
        &LogOptions {
            tail_lines: Some(80),
            ..Default::default()
        },
    );
    let start = out.len().saturating_sub(2048);
    let s = String::from_utf8_lossy(&out[start..]).into_owned();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026-01-01T00:00:01.000000000Z stdout F one\n\
2026-01-01T00:00:02.000000000Z stderr F two\n\
2026-01-01T00:00:03.000000000Z stdout P thr\n\
2026-01-01T00:00:03.500000000Z stdout F ee\n\
2026-01-01T00:00:04.000000000Z stdout F four\n\
2026-01-01T00:00:05.000000000Z stdout F fi";

    #[test]
    fn records_parse() {
        let r = parse_record(b"2026-01-01T00:00:01.5Z stdout P abc def").unwrap();
        assert_eq!(r.stream, "stdout");
        assert!(r.partial);
        assert_eq!(r.content, b"abc def");
        assert!(parse_record(b"garbage").is_none());
    }

    #[test]
    fn kubectl_logs_options() {
        let all = select(LOG, &LogOptions::default());
        assert_eq!(all, b"one\ntwo\nthree\nfour\n");
        let tail = select(
            LOG,
            &LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(tail, b"three\nfour\n");
        let ts = select(
            LOG,
            &LogOptions {
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            },
        );
        assert_eq!(ts, b"2026-01-01T00:00:04.000000000Z four\n");
        let since = select(
            LOG,
            &LogOptions {
                since: Some(
                    DateTime::parse_from_rfc3339("2026-01-01T00:00:02.5Z")
                        .unwrap()
                        .with_timezone(&Utc),
                ),
                ..Default::default()
            },
        );
        assert_eq!(since, b"three\nfour\n");
        let limited = select(
            LOG,
            &LogOptions {
                limit_bytes: Some(6),
                ..Default::default()
            },
        );
        assert_eq!(limited, b"one\ntw");
        let (_, rest) = lines(LOG, &LogOptions::default());
        assert_eq!(rest, "2026-01-01T00:00:05.000000000Z stdout F fi".len());
    }

    #[test]
    fn termination_message_from_the_log_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let mut data = Vec::new();
        for i in 0..100 {
            data.extend_from_slice(
                format!("2026-01-01T00:00:01.000000000Z stdout F line {i}\n").as_bytes(),
            );
        }
        std::fs::write(&p, &data).unwrap();
        let m = termination_tail(&p).unwrap();
        assert!(
            m.starts_with("line 20\n") && m.ends_with("line 99\n"),
            "{m}"
        );
        assert_eq!(termination_tail(&d.path().join("none")), None);
    }
}
