//! Helpers shared by the commit log integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use liftbridge_server::commitlog::{Log, LogConfig, NewRecord, Record, RecoveryReport};

/// Timestamp base used by `rec` (2024-01-01 in ns).
pub const T0: i64 = 1_704_067_200_000_000_000;

/// A deterministic record for offset `i`: value of `len` bytes derived from `i`, key `k<i % keys>` when
/// `keys > 0`, one header, timestamp `T0 + i ms`.
pub fn rec_sized(i: u64, len: usize) -> NewRecord {
    let mut value = format!("value-{i}-").into_bytes();
    value.resize(len.max(value.len()), b'a' + (i % 26) as u8);
    NewRecord::new(T0 + i as i64 * 1_000_000, value).with_header("h", format!("{i}"))
}

/// `rec_sized(i, 20)`.
pub fn rec(i: u64) -> NewRecord {
    rec_sized(i, 20)
}

/// Asserts that `r` is what `rec_sized(offset, len)` appended.
pub fn check(r: &Record, len: usize) {
    let expected = rec_sized(r.offset, len);
    assert_eq!(r.value, expected.value, "value of offset {}", r.offset);
    assert_eq!(
        r.timestamp_ns, expected.timestamp_ns,
        "timestamp of offset {}",
        r.offset
    );
    assert_eq!(
        r.headers, expected.headers,
        "headers of offset {}",
        r.offset
    );
    assert_eq!(r.key, None);
}

/// A configuration with small segments and a dense index, no age-based behaviour.
pub fn small() -> LogConfig {
    LogConfig {
        segment_max_bytes: 4096,
        segment_max_age: None,
        retention_max_age: None,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Appends records `from..to` (one batch per `batch` records) with `rec`.
pub fn fill(log: &Log, from: u64, to: u64, batch: usize) {
    let all: Vec<NewRecord> = (from..to).map(rec).collect();
    for chunk in all.chunks(batch.max(1)) {
        log.append(1, chunk).unwrap();
    }
}

/// Every record of the log, read in batches of about 1000 bytes.
pub fn read_all(log: &Log) -> Vec<Record> {
    let mut out = Vec::new();
    let mut r = log.reader(0);
    loop {
        let batch = r.read_batch(1000, u64::MAX).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Offsets of `records`.
pub fn offsets(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.offset).collect()
}

/// Sorted paths in `dir` ending with `suffix`.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Opens, unwrapping.
pub fn open(dir: &Path, cfg: LogConfig) -> (Log, RecoveryReport) {
    Log::open(dir, cfg).unwrap()
}

/// A key as `Bytes`.
pub fn key(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
