//! The CRI container log format, written by the shim: one record per line,
//! `<RFC3339 UTC, nanoseconds> <stdout|stderr> <F|P> <content>\n`. A line longer than
//! [`MAX_LINE`] is split into `P` (partial) records closed by an `F` record, like
//! containerd; content left without a newline when the stream ends is written as `F`.
//!
//! Rotation by size ([`Rotation`], kubelet's containerLogMaxSize/containerLogMaxFiles,
//! done by the shim as it writes rather than by a periodic check): before a record would
//! make the current file larger than `max_size`, the current file `<log>` is renamed to
//! `<log>.<UTC time as %Y%m%d-%H%M%S.%9f>` (kubelet's `0.log.20060102-150405` plus
//! nanoseconds, so the names are unique and sort in rotation order) and a new, empty
//! `<log>` takes its place; then the oldest rotated files are removed so that at most
//! `max_files` files remain, the current one included. Records are never split across
//! files; a file exceeds `max_size` only when one record alone is larger. The path
//! `<log>` always exists during a rotation (hard link to the rotated name, then an atomic
//! rename of the new file over `<log>`), so a reader that opens it never misses it; a
//! reader holding the old file open sees its inode replaced ([`rotated_files`] lists
//! the older files in order). Rotated files are not compressed (kubelet gzips them).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

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
/// record is written whole with one `write_all` (the file is opened with O_APPEND) and a
/// rotation happens between records only.
pub fn write_records(file: &std::sync::Mutex<LogFile>, records: &[u8]) -> std::io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
    f.write_records(records, Utc::now())
}

/// kubelet's default containerLogMaxSize (10Mi).
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// kubelet's default containerLogMaxFiles.
pub const DEFAULT_MAX_FILES: u32 = 5;

/// Size-based rotation of one log file (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a record would make the current file larger than this many bytes.
    pub max_size: u64,
    /// Files kept per log, the current one included; at least 2.
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// One piece of a write: `range` of the records goes to one file, after a rotation if
/// `rotate_first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub rotate_first: bool,
    pub range: Range<usize>,
}

/// Splits whole `records` into the pieces that go to successive files when the current
/// file holds `current` bytes: a rotation comes before a record that would take a
/// non-empty file past `max_size`. Bytes after the last newline count as one record.
pub fn plan_writes(current: u64, max_size: u64, records: &[u8]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut size = current;
    let mut start = 0;
    let mut rotate_first = false;
    let mut at = 0;
    while at < records.len() {
        let end = records[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(records.len(), |n| at + n + 1);
        let len = (end - at) as u64;
        if size > 0 && size.saturating_add(len) > max_size {
            if at > start {
                out.push(Piece {
                    rotate_first,
                    range: start..at,
                });
            }
            rotate_first = true;
            start = at;
            size = 0;
        }
        size = size.saturating_add(len);
        at = end;
    }
    if start < records.len() {
        out.push(Piece {
            rotate_first,
            range: start..records.len(),
        });
    }
    out
}

/// The name a log gets when rotated at `now`: `<log>.<%Y%m%d-%H%M%S.%9f>`.
pub fn rotated_path(log: &Path, now: DateTime<Utc>) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(now.format("%Y%m%d-%H%M%S.%9f").to_string());
    log.with_file_name(name)
}

/// True for a rotation suffix as [`rotated_path`] makes it (`20260102-150405.123456789`).
fn is_rotation_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 25
        && b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'-',
            15 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// The rotated files of `log`, oldest first (none if its directory is gone).
pub fn rotated_files(log: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let entries = match std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.strip_prefix(&prefix).is_some_and(is_rotation_suffix))
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| log.with_file_name(n)).collect())
}

/// The oldest rotated files (`rotated` is oldest first) to remove so that at most
/// `max_files` files remain with the current one.
pub fn to_prune(rotated: &[PathBuf], max_files: u32) -> &[PathBuf] {
    let keep = usize::try_from(max_files.max(1) - 1).unwrap_or(usize::MAX);
    &rotated[..rotated.len().saturating_sub(keep)]
}

/// A container's log file as the shim writes it, rotated by size if configured.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the current file (as far as this writer knows).
    size: u64,
    rotation: Option<Rotation>,
    /// The time in the newest rotated name: the next one must sort after it.
    last_rotation: Option<DateTime<Utc>>,
}

/// The time in a rotated file's name (see [`rotated_path`]).
pub fn rotation_time(rotated: &Path) -> Option<DateTime<Utc>> {
    let name = rotated.file_name()?.to_str()?;
    let suffix = name.get(name.len().checked_sub(25)?..)?;
    if !is_rotation_suffix(suffix) {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(suffix, "%Y%m%d-%H%M%S%.9f")
        .ok()
        .map(|t| t.and_utc())
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path, rotation: Option<Rotation>) -> std::io::Result<LogFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let last_rotation = match rotation {
            Some(_) => rotated_files(path)?.last().and_then(|p| rotation_time(p)),
            None => None,
        };
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
            last_rotation,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends whole records, rotating between them as needed. A failed rotation is
    /// reported on stderr (the shim's own log) and writing goes on in the current file.
    pub fn write_records(&mut self, records: &[u8], now: DateTime<Utc>) -> std::io::Result<()> {
        let Some(rot) = self.rotation else {
            self.file.write_all(records)?;
            self.size += records.len() as u64;
            return Ok(());
        };
        for piece in plan_writes(self.size, rot.max_size, records) {
            if piece.rotate_first {
                if let Err(e) = self.rotate(now, rot.max_files) {
                    eprintln!("rotating {}: {e}", self.path.display());
                }
                // Either way the next rotation is due after another max_size bytes.
                self.size = 0;
            }
            let bytes = &records[piece.range];
            self.file.write_all(bytes)?;
            self.size += bytes.len() as u64;
        }
        Ok(())
    }

    /// Renames the current file to its rotated name, starts a new one and prunes.
    fn rotate(&mut self, now: DateTime<Utc>, max_files: u32) -> std::io::Result<()> {
        // Names sort in rotation order even with several rotations in one nanosecond
        // or a clock that went back.
        let mut t = match self.last_rotation {
            Some(last) if last >= now => last + chrono::Duration::nanoseconds(1),
            _ => now,
        };
        let mut rotated = rotated_path(&self.path, t);
        while rotated.exists() {
            t += chrono::Duration::nanoseconds(1);
            rotated = rotated_path(&self.path, t);
        }
        // Link first, so that `path` names a file at every moment.
        let linked = std::fs::hard_link(&self.path, &rotated).is_ok();
        if !linked {
            std::fs::rename(&self.path, &rotated)?;
        }
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(self.path.file_name().unwrap_or_default());
        tmp_name.push(".new");
        let tmp = self.path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let fresh = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&tmp)
            .and_then(|f| std::fs::rename(&tmp, &self.path).map(|()| f));
        let file = match fresh {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if linked {
                    // Nothing changed for readers: drop the extra name again.
                    let _ = std::fs::remove_file(&rotated);
                } else {
                    // `path` is gone: put a file there again if possible.
                    if let Ok(f) = open_append(&self.path) {
                        self.file = f;
                    }
                }
                return Err(e);
            }
        };
        self.file = file;
        self.last_rotation = Some(t);
        for old in to_prune(&rotated_files(&self.path)?, max_files) {
            match std::fs::remove_file(old) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
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

    fn rec(n: usize, content: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend(format_record(
                t(),
                Stream::Stdout,
                false,
                format!("{content}{i:04}").as_bytes(),
            ));
        }
        out
    }

    #[test]
    fn plan_rotates_between_records_only() {
        let one = rec(1, "x").len(); // every record of rec() has this length
        let data = rec(5, "x");
        // Everything fits: one piece, no rotation.
        assert_eq!(
            plan_writes(0, 100 * one as u64, &data),
            vec![Piece {
                rotate_first: false,
                range: 0..data.len()
            }]
        );
        // Two records per file, starting with an empty file.
        let p = plan_writes(0, 2 * one as u64, &data);
        assert_eq!(
            p,
            vec![
                Piece {
                    rotate_first: false,
                    range: 0..2 * one
                },
                Piece {
                    rotate_first: true,
                    range: 2 * one..4 * one
                },
                Piece {
                    rotate_first: true,
                    range: 4 * one..5 * one
                },
            ]
        );
        // The current file is almost full: rotate before the first record.
        let p = plan_writes(2 * one as u64 - 1, 2 * one as u64, &data[..one]);
        assert_eq!(
            p,
            vec![Piece {
                rotate_first: true,
                range: 0..one
            }]
        );
        // A record larger than the limit gets a file of its own; an empty file is never
        // rotated.
        let p = plan_writes(0, 10, &data[..2 * one]);
        assert_eq!(
            p,
            vec![
                Piece {
                    rotate_first: false,
                    range: 0..one
                },
                Piece {
                    rotate_first: true,
                    range: one..2 * one
                },
            ]
        );
        assert!(plan_writes(5, 10, b"").is_empty());
        // Every piece ends at a record boundary.
        for p in plan_writes(0, 3 * one as u64 + 7, &rec(20, "abc")) {
            assert_eq!(rec(20, "abc")[p.range.end - 1], b'\n');
        }
    }

    #[test]
    fn rotated_names_sort_in_rotation_order_and_are_recognised() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        let a = rotated_path(&log, t());
        assert_eq!(
            a.file_name().unwrap().to_str().unwrap(),
            "0.log.20260102-150405.999999999"
        );
        assert_eq!(rotation_time(&a), Some(t()));
        assert_eq!(rotation_time(&log), None);
        let b = rotated_path(&log, t() + chrono::Duration::nanoseconds(1));
        let c = rotated_path(&log, t() + chrono::Duration::seconds(3600));
        for p in [&c, &a, &b] {
            std::fs::write(p, "").unwrap();
        }
        // Not rotated files of 0.log: other runs, the temporary file, other suffixes.
        for other in [
            "1.log",
            "10.log.20260102-150405.999999999",
            ".0.log.new",
            "0.log.tmp",
            "0.log",
        ] {
            std::fs::write(d.path().join(other), "").unwrap();
        }
        assert_eq!(rotated_files(&log).unwrap(), vec![a.clone(), b.clone(), c]);
        assert!(rotated_files(&d.path().join("gone/0.log"))
            .unwrap()
            .is_empty());
        let all = rotated_files(&log).unwrap();
        assert_eq!(to_prune(&all, 2), &all[..2]);
        assert_eq!(to_prune(&all, 4), &[] as &[PathBuf]);
        assert_eq!(to_prune(&all, 3), &all[..1]);
    }

    #[test]
    fn log_file_rotates_keeps_max_files_and_loses_nothing_recent() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        let one = rec(1, "line ").len() as u64;
        let rot = Rotation {
            max_size: 3 * one + 5,
            max_files: 3,
        };
        let mut f = LogFile::open(&log, Some(rot)).unwrap();
        let mut now = t();
        // 20 records, written in uneven batches.
        let all = rec(20, "line ");
        let mut at = 0;
        for n in [1usize, 4, 2, 7, 1, 5] {
            let end = (at + n * one as usize).min(all.len());
            f.write_records(&all[at..end], now).unwrap();
            at = end;
            now += chrono::Duration::milliseconds(1);
        }
        assert_eq!(at, all.len());
        // Many rotations at one instant (one big write) keep the newest records too.
        f.write_records(&rec(20, "line "), now).unwrap();
        f.write_records(&all, now).unwrap();
        let rotated = rotated_files(&log).unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let mut files = rotated.clone();
        files.push(log.clone());
        let mut kept = Vec::new();
        for p in &files {
            let data = std::fs::read(p).unwrap();
            assert!(data.len() as u64 <= rot.max_size, "{p:?}: {}", data.len());
            assert!(data.is_empty() || data.ends_with(b"\n"));
            kept.extend(data);
        }
        // The files hold the newest records, in order and whole.
        assert!(all.ends_with(&kept), "{}", String::from_utf8_lossy(&kept));
        assert_eq!(kept.len() as u64 % one, 0);
        assert!(kept.len() as u64 >= 2 * 3 * one);
        // Reopening (a new shim for the same path) continues with the current size.
        drop(f);
        let mut f = LogFile::open(&log, Some(rot)).unwrap();
        f.write_records(&rec(3, "more "), now).unwrap();
        assert_eq!(rotated_files(&log).unwrap().len(), 2);
        assert!(std::fs::metadata(&log).unwrap().len() <= rot.max_size);
    }

    #[test]
    fn without_rotation_the_file_just_grows() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        let mut f = LogFile::open(&log, None).unwrap();
        let data = rec(100, "x");
        f.write_records(&data, t()).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), data);
        assert!(rotated_files(&log).unwrap().is_empty());
        assert_eq!(f.path(), log);
    }

    #[test]
    fn a_reader_holding_the_old_file_sees_the_inode_change() {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        let one = rec(1, "r").len() as u64;
        let mut f = LogFile::open(
            &log,
            Some(Rotation {
                max_size: one,
                max_files: 2,
            }),
        )
        .unwrap();
        f.write_records(&rec(1, "a"), t()).unwrap();
        let mut reader = File::open(&log).unwrap();
        let ino = reader.metadata().unwrap().ino();
        f.write_records(&rec(1, "b"), t()).unwrap();
        assert_ne!(std::fs::metadata(&log).unwrap().ino(), ino);
        let mut old = String::new();
        reader.read_to_string(&mut old).unwrap();
        assert!(old.ends_with(" stdout F a0000\n"), "{old}");
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .ends_with(" stdout F b0000\n"));
        // No temporary file is left.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn empty_line_is_a_record() {
        let mut s = LineSplitter::new(Stream::Stdout);
        let out = String::from_utf8(s.push(b"\n", t())).unwrap();
        assert_eq!(out, "2026-01-02T15:04:05.999999999Z stdout F \n");
    }
}
