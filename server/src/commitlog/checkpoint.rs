//! Small text files rewritten atomically: high watermark, recovery point, clean-shutdown marker and the
//! leader-epoch cache.
//!
//! Every file starts with a format version line (`0`). A write goes to `<name>.tmp`, is fsynced, renamed
//! over `<name>` and the directory is fsynced, so a reader sees either the old or the new content, never a
//! mix or an empty file (Liftbridge issue #333). Parsing is strict: anything unexpected is reported as
//! damage and the caller falls back to a safe default.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{LogError, Result};
use super::file::sync_dir;

/// The high watermark checkpoint (Kafka's and Liftbridge's name).
pub const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
/// The leader-epoch cache.
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// The first offset not known to be durable; recovery after an unclean stop scans from its segment on.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-checkpoint";
/// Present only after a clean close; holds the log end offset at close.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Marks a directory as holding this log format; segments in a directory without it are refused.
pub const FORMAT_FILE: &str = "log-format";
/// Content of [`FORMAT_FILE`].
pub const FORMAT_TAG: &str = "liftbridge-rs commitlog 1\n";
/// Lock file preventing two `Log`s on one directory.
pub const LOCK_FILE: &str = ".lock";
/// Suffix of in-progress checkpoint writes.
pub const TMP_SUFFIX: &str = ".tmp";

const VERSION: &str = "0";

/// Writes `contents` to `dir/name` atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &str) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        Ok(())
    };
    write().map_err(|e| LogError::io("write checkpoint", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| LogError::io("rename checkpoint", &path, e))?;
    sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Outcome of reading a checkpoint file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loaded<T> {
    /// The file does not exist.
    Missing,
    /// The file exists but is not valid; the string says why.
    Damaged(String),
    /// The parsed value.
    Value(T),
}

fn read_lines(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io("read checkpoint", path, e)),
    }
}

/// Reads a single-value checkpoint (`0\n<value>\n`).
pub(crate) fn read_value<T: std::str::FromStr>(path: &Path) -> Result<Loaded<T>> {
    let Some(text) = read_lines(path)? else {
        return Ok(Loaded::Missing);
    };
    let lines: Vec<&str> = text.lines().collect();
    match lines.as_slice() {
        [v, value] if *v == VERSION => match value.trim().parse::<T>() {
            Ok(x) => Ok(Loaded::Value(x)),
            Err(_) => Ok(Loaded::Damaged(format!("cannot parse value {value:?}"))),
        },
        _ => Ok(Loaded::Damaged(format!(
            "expected version line and one value, found {} lines",
            lines.len()
        ))),
    }
}

/// Writes a single-value checkpoint atomically.
pub(crate) fn write_value<T: std::fmt::Display>(dir: &Path, name: &str, value: T) -> Result<()> {
    write_atomic(dir, name, &format!("{VERSION}\n{value}\n"))
}

/// Renders the leader-epoch cache file.
pub(crate) fn render_epochs(entries: &[(u64, u64)]) -> String {
    let mut s = format!("{VERSION}\n{}\n", entries.len());
    for (epoch, start) in entries {
        s.push_str(&format!("{epoch} {start}\n"));
    }
    s
}

/// Reads the leader-epoch cache file.
pub(crate) fn read_epochs(path: &Path) -> Result<Loaded<Vec<(u64, u64)>>> {
    let Some(text) = read_lines(path)? else {
        return Ok(Loaded::Missing);
    };
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Ok(Loaded::Damaged("unknown version line".into()));
    }
    let Some(Ok(count)) = lines.next().map(|l| l.trim().parse::<usize>()) else {
        return Ok(Loaded::Damaged("missing entry count".into()));
    };
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for line in lines {
        let mut parts = line.split_whitespace();
        let (Some(e), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(Loaded::Damaged(format!("malformed entry {line:?}")));
        };
        match (e.parse::<u64>(), s.parse::<u64>()) {
            (Ok(e), Ok(s)) => out.push((e, s)),
            _ => return Ok(Loaded::Damaged(format!("malformed entry {line:?}"))),
        }
    }
    if out.len() != count {
        return Ok(Loaded::Damaged(format!(
            "header says {count} entries, found {}",
            out.len()
        )));
    }
    if out.windows(2).any(|w| w[1].0 <= w[0].0 || w[1].1 < w[0].1) {
        return Ok(Loaded::Damaged("entries are not increasing".into()));
    }
    Ok(Loaded::Value(out))
}

/// Path of a checkpoint in `dir`.
pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), HIGH_WATERMARK_FILE);
        assert_eq!(read_value::<i64>(&p).unwrap(), Loaded::Missing);
        write_value(dir.path(), HIGH_WATERMARK_FILE, -1i64).unwrap();
        assert_eq!(read_value::<i64>(&p).unwrap(), Loaded::Value(-1));
        write_value(dir.path(), HIGH_WATERMARK_FILE, 42i64).unwrap();
        assert_eq!(read_value::<i64>(&p).unwrap(), Loaded::Value(42));
        assert!(
            !dir.path()
                .join("replication-offset-checkpoint.tmp")
                .exists()
        );
        fs::write(&p, "").unwrap();
        assert!(matches!(read_value::<i64>(&p).unwrap(), Loaded::Damaged(_)));
        fs::write(&p, "0\nabc\n").unwrap();
        assert!(matches!(read_value::<i64>(&p).unwrap(), Loaded::Damaged(_)));
    }

    #[test]
    fn epochs_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), LEADER_EPOCH_FILE);
        let e = vec![(1, 0), (3, 10), (7, 10)];
        write_atomic(dir.path(), LEADER_EPOCH_FILE, &render_epochs(&e)).unwrap();
        assert_eq!(read_epochs(&p).unwrap(), Loaded::Value(e));
        fs::write(&p, "0\n2\n1 0\n").unwrap();
        assert!(matches!(read_epochs(&p).unwrap(), Loaded::Damaged(_)));
        fs::write(&p, "0\n2\n5 0\n1 4\n").unwrap();
        assert!(matches!(read_epochs(&p).unwrap(), Loaded::Damaged(_)));
    }
}
