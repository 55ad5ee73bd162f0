//! Reading container logs (the CRI format the shim writes): parsing records, joining
//! partial lines, and `kubectl logs` options — tail, since, timestamps, limit-bytes —
//! applied to a log file, plus the tail kubelet uses as a termination message
//! (FallbackToLogsOnError). [`LogFollower`] reads a growing log across the shim's size
//! rotations (`podium_runtime::log`); [`crate::pod_logs`] streams it. Like kubelet,
//! `kubectl logs` shows the current file only: rotated files are read only by a follower
//! that was already reading when they were rotated.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

/// kubelet's FallbackToLogsOnError message: the last 80 lines, at most 2048 bytes. The
/// newest rotated file comes first, so a rotation just before the end loses nothing.
pub fn termination_tail(path: &Path) -> Option<String> {
    let mut data = podium_runtime::log::rotated_files(path)
        .ok()
        .and_then(|r| r.last().and_then(|p| std::fs::read(p).ok()))
        .unwrap_or_default();
    data.extend(std::fs::read(path).ok()?);
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

/// A file's identity (device, inode): a rotation puts another file at the log's path.
/// The run index of a container log file name: `3.log` and its rotations `3.log.<time>`.
fn run_of_log_name(name: &str) -> Option<u32> {
    let (run, rest) = name.split_once(".log")?;
    (rest.is_empty() || rest.starts_with('.'))
        .then(|| run.parse().ok())
        .flatten()
}

/// Removes the log files in a container's log directory of runs before `keep_from`
/// (kubelet's container GC keeps the current and the previous run's logs, for
/// `kubectl logs --previous`). Returns how many files were removed.
pub fn remove_logs_before(dir: &Path, keep_from: u32) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if run_of_log_name(&name.to_string_lossy()).is_some_and(|r| r < keep_from) {
            std::fs::remove_file(e.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Reads one container log as it grows, following it across rotations. It holds the
/// file open (the pod's cleanup may remove it while the last lines are still to be
/// sent). When the path names another file (the shim rotated the log), it reads the old
/// file to its end, then the rotated files that came after it, oldest first, then the
/// new current file from its start — so no line is lost or repeated unless the files it
/// needed were already removed (more than max-files rotations between two reads). A
/// file that shrank (truncated in place) is read again from its start.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    file: File,
    id: (u64, u64),
    /// Bytes read from `file`.
    pos: u64,
}

impl LogFollower {
    /// Opens the log at `path`; returns the follower and what the file holds now.
    pub fn open(path: &Path) -> std::io::Result<(LogFollower, Vec<u8>)> {
        let file = File::open(path)?;
        let id = identity(&file.metadata()?);
        let mut f = LogFollower {
            path: path.to_path_buf(),
            file,
            id,
            pos: 0,
        };
        let mut data = Vec::new();
        f.read_rest(&mut data)?;
        Ok((f, data))
    }

    /// Appends what the current file has beyond what was read.
    fn read_rest(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        if self.file.metadata()?.len() < self.pos {
            self.file.seek(SeekFrom::Start(0))?;
            self.pos = 0;
        }
        let n = self.file.read_to_end(out)?;
        self.pos += n as u64;
        Ok(())
    }

    /// Everything written since the last call, in order, across rotations.
    pub fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_rest(&mut out)?;
        loop {
            let now_at_path = match std::fs::metadata(&self.path) {
                Ok(m) => identity(&m),
                // Removed (the pod is being cleaned up): what we hold is all there is.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            if now_at_path == self.id {
                return Ok(out);
            }
            // Rotated. Open the new current file first: whatever is rotated after this
            // moment is then read through it, never missed between the listing and here.
            let next = match File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            let next_id = identity(&next.metadata()?);
            let rotated: Vec<(PathBuf, (u64, u64))> =
                podium_runtime::log::rotated_files(&self.path)?
                    .into_iter()
                    .filter_map(|p| {
                        let id = identity(&std::fs::metadata(&p).ok()?);
                        Some((p, id))
                    })
                    .collect();
            // The files rotated after ours; if ours is gone (pruned), every remaining one
            // is newer than it.
            let after = rotated
                .iter()
                .position(|(_, id)| *id == self.id)
                .map_or(0, |i| i + 1);
            for (p, id) in &rotated[after..] {
                if *id == next_id {
                    break;
                }
                match File::open(p) {
                    Ok(mut f) => {
                        f.read_to_end(&mut out)?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            self.file = next;
            self.id = next_id;
            self.pos = 0;
            self.read_rest(&mut out)?;
        }
    }
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

    fn record(i: u32) -> Vec<u8> {
        podium_runtime::log::format_record(
            Utc::now(),
            podium_runtime::log::Stream::Stdout,
            false,
            format!("line {i:05}").as_bytes(),
        )
    }

    fn numbers(data: &[u8]) -> Vec<u32> {
        let (ls, rest) = lines(data, &LogOptions::default());
        assert_eq!(rest, 0);
        ls.iter()
            .map(|l| {
                let s = std::str::from_utf8(l).unwrap().trim_end();
                s.strip_prefix("line ").unwrap().parse().unwrap()
            })
            .collect()
    }

    /// A writer rotating every few records and a follower reading now and then: the
    /// follower sees every line once, in order.
    #[test]
    fn follower_reads_across_rotations_without_loss_or_repeats() {
        use podium_runtime::log::{LogFile, Rotation};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        let one = record(0).len() as u64;
        let rot = Rotation {
            max_size: 4 * one,
            max_files: 3,
        };
        let mut w = LogFile::open(&path, Some(rot)).unwrap();
        w.write_records(&record(0), Utc::now()).unwrap();
        let (mut f, first) = LogFollower::open(&path).unwrap();
        let mut seen = numbers(&first);
        let mut next = 1;
        // Between reads: 0..=7 records, i.e. up to two rotations (less than max-files).
        for round in 0..200u32 {
            for _ in 0..(round * 7 % 8) {
                w.write_records(&record(next), Utc::now()).unwrap();
                next += 1;
            }
            seen.extend(numbers(&f.read_new().unwrap()));
        }
        assert_eq!(seen, (0..next).collect::<Vec<_>>());
        assert!(podium_runtime::log::rotated_files(&path).unwrap().len() <= 2);
    }

    /// More rotations than max-files between two reads: the files already removed are
    /// lost, but nothing is repeated and the rest arrives in order.
    #[test]
    fn follower_after_its_file_was_pruned_reads_what_remains() {
        use podium_runtime::log::{LogFile, Rotation};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        let one = record(0).len() as u64;
        let mut w = LogFile::open(
            &path,
            Some(Rotation {
                max_size: 2 * one,
                max_files: 2,
            }),
        )
        .unwrap();
        w.write_records(&record(0), Utc::now()).unwrap();
        let (mut f, first) = LogFollower::open(&path).unwrap();
        assert_eq!(numbers(&first), vec![0]);
        for i in 1..20 {
            w.write_records(&record(i), Utc::now()).unwrap();
        }
        let got = numbers(&f.read_new().unwrap());
        // Its own file (0, 1) to the end, then the two newest files (16..=19).
        assert_eq!(got, vec![1, 16, 17, 18, 19]);
        assert!(f.read_new().unwrap().is_empty());
    }

    #[test]
    fn follower_handles_truncation_and_removal() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        std::fs::write(&path, [record(1), record(2)].concat()).unwrap();
        let (mut f, first) = LogFollower::open(&path).unwrap();
        assert_eq!(numbers(&first), vec![1, 2]);
        // Truncated in place and rewritten shorter: read again from the start.
        std::fs::write(&path, record(3)).unwrap();
        assert_eq!(numbers(&f.read_new().unwrap()), vec![3]);
        // Removed (pod cleanup): what was held is all; no error.
        std::fs::remove_file(&path).unwrap();
        assert!(f.read_new().unwrap().is_empty());
        assert!(LogFollower::open(&path).is_err());
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
        // Just rotated: the tail comes from the newest rotated file and the current one.
        let rotated = podium_runtime::log::rotated_path(&p, Utc::now());
        std::fs::rename(&p, &rotated).unwrap();
        std::fs::write(&p, b"2026-01-01T00:00:02.000000000Z stdout F after\n").unwrap();
        let m = termination_tail(&p).unwrap();
        assert!(
            m.starts_with("line 21\n") && m.ends_with("line 99\nafter\n"),
            "{m}"
        );
    }

    #[test]
    fn logs_of_runs_before_the_previous_one_are_removed() {
        assert_eq!(run_of_log_name("3.log"), Some(3));
        assert_eq!(run_of_log_name("3.log.20261129-120000.000000001"), Some(3));
        assert_eq!(run_of_log_name("3.logx"), None);
        assert_eq!(run_of_log_name("x.log"), None);
        let d = tempfile::tempdir().unwrap();
        for f in [
            "0.log",
            "0.log.20261129-1",
            "1.log",
            "2.log",
            "2.log.20261129-1",
            "notes",
        ] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        assert_eq!(remove_logs_before(d.path(), 1).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["1.log", "2.log", "2.log.20261129-1", "notes"]);
        assert_eq!(remove_logs_before(&d.path().join("absent"), 5).unwrap(), 0);
    }
}
