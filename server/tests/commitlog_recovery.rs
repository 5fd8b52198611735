//! Commit log recovery: every kind of damage is cut or rebuilt, reported precisely, and never served.

mod commitlog_util;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use commitlog_util::*;
use liftbridge_server::commitlog::index::IndexProblem;
use liftbridge_server::commitlog::recovery::IndexRepairReason;
use liftbridge_server::commitlog::{
    Log, LogConfig, LogError, RecoveryReport, RecoveryScan, SegmentInfo,
};
use proptest::prelude::*;

/// A log of `n` records (`rec(i)`, batches of 5) in small segments, closed cleanly or dropped.
struct Fixture {
    dir: tempfile::TempDir,
    segs: Vec<SegmentInfo>,
    n: u64,
}

fn fixture(n: u64, clean: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, n, 5);
    let segs = log.segments();
    if clean {
        log.close().unwrap();
    } else {
        // As the server's ticker does: fsync the segments rolls sealed, which moves the recovery point.
        log.sync_if_due().unwrap();
    }
    drop(log);
    Fixture { dir, segs, n }
}

impl Fixture {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn reopen(&self) -> (Log, RecoveryReport) {
        open(self.path(), small())
    }

    fn reopen_full(&self) -> (Log, RecoveryReport) {
        open(
            self.path(),
            LogConfig {
                recovery_scan: RecoveryScan::Full,
                ..small()
            },
        )
    }

    fn last(&self) -> &SegmentInfo {
        self.segs.last().unwrap()
    }

    fn index_path(&self, seg: &SegmentInfo, ext: &str) -> PathBuf {
        self.path().join(format!("{:020}.{ext}", seg.base_offset))
    }
}

/// Byte position of `offset` inside the segment starting at `base` (records are `rec(i)`).
fn pos_of(base: u64, offset: u64) -> u64 {
    (base..offset)
        .map(|i| rec(i).encoded_len().unwrap() as u64)
        .sum()
}

fn flip_bit(path: &Path, pos: u64) {
    let mut b = fs::read(path).unwrap();
    b[pos as usize] ^= 0x10;
    fs::write(path, b).unwrap();
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Asserts the log holds exactly `expected` offsets, each with its original content.
fn assert_survivors(log: &Log, expected: impl IntoIterator<Item = u64>) {
    let all = read_all(log);
    assert_eq!(offsets(&all), expected.into_iter().collect::<Vec<_>>());
    all.iter().for_each(|r| check(r, 20));
}

fn rebuilt(report: &RecoveryReport, path: &Path) -> Option<IndexProblem> {
    report
        .index_repairs
        .iter()
        .find(|r| r.path == path)
        .and_then(|r| match &r.reason {
            IndexRepairReason::Rebuilt(p) => Some(p.clone()),
            _ => None,
        })
}

#[test]
fn torn_tail_is_cut_back_to_the_last_complete_record() {
    for clean in [false, true] {
        let f = fixture(200, clean);
        let last = f.last();
        let len = fs::metadata(&last.path).unwrap().len();
        set_len(&last.path, len - 5);
        let (log, report) = f.reopen();
        assert_eq!(report.clean_shutdown, clean);
        assert_eq!(report.truncated_segments.len(), 1, "{report:?}");
        let t = &report.truncated_segments[0];
        assert_eq!(t.path, last.path);
        assert_eq!(t.first_lost_offset, 199);
        assert_eq!(t.next_kept_offset, None);
        assert_eq!(t.position, pos_of(last.base_offset, 199));
        assert_eq!(t.bytes_removed, rec(199).encoded_len().unwrap() as u64 - 5);
        assert!(t.reason.contains("torn"), "{}", t.reason);
        assert!(report.has_problems() && !report.found_no_damage());
        assert_eq!(log.end_offset(), 199);
        assert_survivors(&log, 0..199);
        // The log continues from the cut.
        assert_eq!(log.append(1, &[rec(199)]).unwrap().first_offset, 199);
        drop(log);
        let (log, report) = f.reopen();
        assert!(report.found_no_damage(), "{report:?}");
        assert_survivors(&log, 0..200);
    }
}

#[test]
fn torn_header_is_cut() {
    let f = fixture(50, false);
    let last = f.last();
    let p = pos_of(last.base_offset, 49);
    set_len(&last.path, p + 10);
    let (log, report) = f.reopen();
    assert_eq!(report.truncated_segments[0].bytes_removed, 10);
    assert!(report.truncated_segments[0].reason.contains("header"));
    assert_survivors(&log, 0..49);
}

#[test]
fn zero_filled_tail_is_cut_and_nothing_is_lost() {
    let f = fixture(100, false);
    let last = f.last();
    append_bytes(&last.path, &[0u8; 4096]);
    let (log, report) = f.reopen();
    assert_eq!(report.truncated_segments.len(), 1);
    let t = &report.truncated_segments[0];
    assert_eq!(t.bytes_removed, 4096);
    assert_eq!(t.first_lost_offset, 100);
    assert!(t.reason.contains("zero-filled"), "{}", t.reason);
    assert_survivors(&log, 0..100);
    assert_eq!(log.append(1, &[rec(100)]).unwrap().first_offset, 100);
}

#[test]
fn bit_flip_in_the_last_segment_cuts_from_the_damaged_record() {
    let f = fixture(200, false);
    let last = f.last();
    let victim = last.base_offset + 3;
    assert!(victim < 199);
    // Flip a bit inside the value of the victim record.
    flip_bit(&last.path, pos_of(last.base_offset, victim) + 40);
    let (log, report) = f.reopen();
    let t = &report.truncated_segments[0];
    assert_eq!(t.first_lost_offset, victim);
    assert_eq!(t.position, pos_of(last.base_offset, victim));
    assert!(t.reason.contains("CRC"), "{}", t.reason);
    assert_survivors(&log, 0..victim);
    assert_eq!(log.end_offset(), victim);
}

#[test]
fn bit_flip_in_a_sealed_segment_cuts_that_segment_and_keeps_later_ones() {
    let f = fixture(400, true);
    assert!(f.segs.len() >= 5);
    let sealed = &f.segs[2];
    let victim = sealed.base_offset + 4;
    flip_bit(&sealed.path, pos_of(sealed.base_offset, victim) + 33);

    // Default open after a clean close does not scan sealed segments: the damage is found at read time,
    // as a typed error, and no record from the damaged place is returned.
    {
        let (log, report) = f.reopen();
        assert!(report.truncated_segments.is_empty());
        let err = log.read(victim, usize::MAX, u64::MAX).unwrap_err();
        assert!(
            matches!(err, LogError::Corrupt { ref path, .. } if *path == sealed.path),
            "{err:?}"
        );
        let mut r = log.reader(0);
        let mut seen = Vec::new();
        let err = loop {
            match r.read_batch(500, u64::MAX) {
                Ok(b) if b.is_empty() => panic!("damage not reported"),
                Ok(b) => seen.extend(b),
                Err(e) => break e,
            }
        };
        assert!(err.is_corruption());
        assert_eq!(offsets(&seen), (0..victim).collect::<Vec<_>>());
        // Records after the damaged segment are still readable.
        let next = f.segs[3].base_offset;
        assert_eq!(log.read(next, 0, u64::MAX).unwrap()[0].offset, next);
    }

    // A full verification cuts the sealed segment at the damage and keeps every later segment.
    let (log, report) = f.reopen_full();
    assert_eq!(report.truncated_segments.len(), 1, "{report:?}");
    let t = &report.truncated_segments[0];
    assert_eq!(t.path, sealed.path);
    assert_eq!(t.first_lost_offset, victim);
    assert_eq!(t.next_kept_offset, Some(f.segs[3].base_offset));
    assert_eq!(
        t.bytes_removed,
        sealed.size_bytes - pos_of(sealed.base_offset, victim)
    );
    let expected: Vec<u64> = (0..victim).chain(f.segs[3].base_offset..f.n).collect();
    assert_survivors(&log, expected.clone());
    assert_eq!(log.end_offset(), f.n);
    // The gap reads as a gap.
    assert_eq!(
        log.read(victim, 0, u64::MAX).unwrap()[0].offset,
        f.segs[3].base_offset
    );
    drop(log);
    let (log, report) = f.reopen_full();
    assert!(report.found_no_damage(), "{report:?}");
    assert_survivors(&log, expected);
}

#[test]
fn truncated_index_is_rebuilt() {
    let f = fixture(300, true);
    let sealed = &f.segs[1];
    let idx = f.index_path(sealed, "index");
    let len = fs::metadata(&idx).unwrap().len();
    assert!(len >= 32, "dense index expected");
    set_len(&idx, len - 7);
    let active_idx = f.index_path(f.last(), "timeindex");
    let alen = fs::metadata(&active_idx).unwrap().len();
    if alen > 0 {
        set_len(&active_idx, alen - 1);
    }
    let (log, report) = f.reopen();
    assert_eq!(
        rebuilt(&report, &idx),
        Some(IndexProblem::Misaligned { len: len - 7 })
    );
    if alen > 0 {
        assert!(matches!(
            rebuilt(&report, &active_idx),
            Some(IndexProblem::Misaligned { .. })
        ));
    }
    assert!(report.truncated_segments.is_empty());
    assert_eq!(fs::metadata(&idx).unwrap().len(), len, "rewritten");
    assert_survivors(&log, 0..300);
    assert_eq!(
        log.offset_for_timestamp(rec(150).timestamp_ns).unwrap(),
        Some(150)
    );
}

#[test]
fn zero_filled_and_garbage_indexes_are_rebuilt() {
    let f = fixture(300, true);
    let (s1, s2, s3) = (&f.segs[1], &f.segs[2], &f.segs[3]);
    let zeroed = f.index_path(s1, "index");
    let len = fs::metadata(&zeroed).unwrap().len();
    fs::write(&zeroed, vec![0u8; len as usize]).unwrap();
    let garbage_aligned = f.index_path(s2, "timeindex");
    fs::write(
        &garbage_aligned,
        (0..64u32).map(|i| (i * 37 + 11) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let garbage_odd = f.index_path(s3, "index");
    fs::write(&garbage_odd, b"definitely not an index").unwrap();
    let (log, report) = f.reopen();
    assert_eq!(
        rebuilt(&report, &zeroed),
        Some(IndexProblem::BadChecksum { entry: 0 })
    );
    assert_eq!(
        rebuilt(&report, &garbage_aligned),
        Some(IndexProblem::BadChecksum { entry: 0 })
    );
    assert_eq!(
        rebuilt(&report, &garbage_odd),
        Some(IndexProblem::Misaligned { len: 23 })
    );
    assert!(report.truncated_segments.is_empty());
    assert_survivors(&log, 0..300);
    drop(log);
    let (_, report) = f.reopen();
    assert!(
        report.index_repairs.is_empty(),
        "repairs persisted: {report:?}"
    );
}

#[test]
fn out_of_order_index_entries_are_rebuilt() {
    let f = fixture(300, true);
    let s = &f.segs[1];
    let idx = f.index_path(s, "index");
    let mut b = fs::read(&idx).unwrap();
    assert!(b.len() >= 32);
    // Swap the first two (individually valid) entries.
    let (a, rest) = b.split_at_mut(16);
    a.swap_with_slice(&mut rest[..16]);
    fs::write(&idx, b).unwrap();
    let (log, report) = f.reopen();
    assert_eq!(
        rebuilt(&report, &idx),
        Some(IndexProblem::OutOfOrder { entry: 1 })
    );
    assert_survivors(&log, 0..300);
}

#[test]
fn missing_index_and_time_index_are_rebuilt() {
    let f = fixture(300, true);
    let sealed = &f.segs[1];
    let removed = [
        f.index_path(sealed, "index"),
        f.index_path(sealed, "timeindex"),
        f.index_path(f.last(), "index"),
        f.index_path(f.last(), "timeindex"),
    ];
    for p in &removed {
        fs::remove_file(p).unwrap();
    }
    let (log, report) = f.reopen();
    for p in &removed {
        assert_eq!(
            rebuilt(&report, p),
            Some(IndexProblem::Missing),
            "{p:?}: {report:?}"
        );
        assert!(p.exists());
    }
    assert_survivors(&log, 0..300);
    for i in [0u64, 77, 150, 299] {
        assert_eq!(
            log.offset_for_timestamp(rec(i).timestamp_ns).unwrap(),
            Some(i)
        );
    }
}

/// A valid (CRC-correct) offset index entry.
fn entry(rel: u32, pos: u64) -> Vec<u8> {
    let mut e = rel.to_be_bytes().to_vec();
    e.extend_from_slice(&pos.to_be_bytes());
    let crc = crc32c::crc32c(&e);
    e.extend_from_slice(&crc.to_be_bytes());
    e
}

#[test]
fn index_entries_pointing_past_the_log_are_rebuilt() {
    let f = fixture(300, true);
    // Sealed segment: a well-formed entry beyond the end of its log.
    let sealed = &f.segs[1];
    let idx = f.index_path(sealed, "index");
    append_bytes(&idx, &entry(1_000, sealed.size_bytes + 100));
    // Active segment: same.
    let active = f.last();
    let aidx = f.index_path(active, "index");
    append_bytes(&aidx, &entry(100_000, active.size_bytes + 5000));
    let (log, report) = f.reopen();
    assert!(
        matches!(rebuilt(&report, &idx), Some(IndexProblem::PastEnd { .. })),
        "{report:?}"
    );
    assert!(
        matches!(rebuilt(&report, &aidx), Some(IndexProblem::PastEnd { .. })),
        "{report:?}"
    );
    assert_survivors(&log, 0..300);
}

#[test]
fn index_entries_beyond_a_cut_tail_are_dropped() {
    let f = fixture(300, false);
    let last = f.last();
    // Make sure the active segment's index has entries, then tear its log at the start.
    let aidx = f.index_path(last, "index");
    let entries = fs::metadata(&aidx).unwrap().len();
    set_len(&last.path, 10);
    let (log, report) = f.reopen();
    assert_eq!(
        report.truncated_segments[0].first_lost_offset,
        last.base_offset
    );
    if entries > 0 {
        assert!(
            matches!(
                rebuilt(&report, &aidx),
                Some(IndexProblem::PastEnd { entry: 0 })
            ),
            "{report:?}"
        );
    }
    assert_eq!(fs::metadata(&aidx).unwrap().len(), 0);
    assert_survivors(&log, 0..last.base_offset);
}

#[test]
fn an_index_entry_that_lies_is_caught_at_read_time() {
    // A structurally valid index whose entry points at the wrong record is a hint the reader verifies.
    let f = fixture(300, true);
    let s = &f.segs[1];
    let idx = f.index_path(s, "index");
    let b = fs::read(&idx).unwrap();
    let rel = u32::from_be_bytes(b[0..4].try_into().unwrap());
    let pos = u64::from_be_bytes(b[4..12].try_into().unwrap());
    // Claim the record there has a later offset (still ordered and in range).
    let mut lie = entry(rel + 1, pos);
    lie.extend_from_slice(&b[16..]);
    fs::write(&idx, &lie).unwrap();
    let (log, _) = f.reopen();
    let target = s.base_offset + u64::from(rel) + 1;
    let got = log.read(target, 0, u64::MAX).unwrap();
    assert_eq!(got[0].offset, target);
    check(&got[0], 20);
    assert_survivors(&log, 0..300);
    // Reverse reads use the index too.
    let rev = log.read_reverse(299, usize::MAX).unwrap();
    assert_eq!(offsets(&rev), (0..300).rev().collect::<Vec<_>>());
    let mut r = log.reverse_reader(target + 3);
    let mut got = Vec::new();
    loop {
        let b = r.next_batch(200).unwrap();
        if b.is_empty() {
            break;
        }
        got.extend(b);
    }
    assert_eq!(offsets(&got), (0..=target + 3).rev().collect::<Vec<_>>());
}

#[test]
fn a_segment_that_cannot_be_opened_fails_open_with_its_path() {
    let f = fixture(300, true);
    let victim = &f.segs[1];
    fs::remove_file(&victim.path).unwrap();
    fs::create_dir(&victim.path).unwrap();
    match Log::open(f.path(), small()) {
        Err(LogError::Io { path, op, .. }) => {
            assert_eq!(path, victim.path);
            assert_eq!(op, "open segment");
        }
        other => panic!("expected an I/O error naming the segment, got {other:?}"),
    }
    // The same for an index file that is a directory.
    fs::remove_dir(&victim.path).unwrap();
    let f = fixture(300, true);
    let idx = f.index_path(&f.segs[2], "index");
    fs::remove_file(&idx).unwrap();
    fs::create_dir(&idx).unwrap();
    match Log::open(f.path(), small()) {
        Err(LogError::Io { path, .. }) => assert_eq!(path, idx),
        other => panic!("expected an I/O error naming the index, got {other:?}"),
    }
}

#[test]
fn leftovers_of_crashed_operations_are_removed() {
    let f = fixture(300, true);
    let s = &f.segs[1];
    let p = f.path();
    let leftovers = [
        p.join(format!("{:020}.log.cleaned", s.base_offset)),
        p.join(format!("{:020}.index.cleaned", s.base_offset)),
        p.join(format!("{:020}.timeindex.cleaned", s.base_offset)),
        p.join(format!("{:020}.log.truncated", f.last().base_offset)),
        p.join("replication-offset-checkpoint.tmp"),
        p.join("leader-epoch-checkpoint.tmp"),
        // An index whose segment is gone (crash while deleting a segment).
        p.join(format!("{:020}.index", 999_999)),
    ];
    for l in &leftovers {
        fs::write(l, b"partial").unwrap();
    }
    // A compaction that crashed after deleting the old index files but before renaming the new log.
    fs::remove_file(f.index_path(s, "index")).unwrap();
    fs::remove_file(f.index_path(s, "timeindex")).unwrap();
    fs::write(p.join("notes.txt"), b"operator file").unwrap();
    let (log, report) = f.reopen();
    for l in &leftovers {
        assert!(!l.exists(), "{l:?} still there");
        assert!(
            report.removed_files.iter().any(|r| &r.path == l),
            "{l:?} not reported: {report:?}"
        );
    }
    assert_eq!(
        rebuilt(&report, &f.index_path(s, "index")),
        Some(IndexProblem::Missing)
    );
    assert_eq!(report.unknown_files, vec![p.join("notes.txt")]);
    assert!(p.join("notes.txt").exists(), "unknown files are left alone");
    assert_survivors(&log, 0..300);
}

#[test]
fn damaged_checkpoints_fall_back_safely() {
    let f = fixture(100, true);
    let p = f.path();
    fs::write(p.join("leader-epoch-checkpoint"), "0\n5\n1 0\n").unwrap();
    fs::write(p.join("clean-shutdown"), "nonsense").unwrap();
    fs::write(p.join("recovery-point-checkpoint"), "").unwrap();
    let (log, report) = f.reopen();
    assert!(!report.clean_shutdown);
    assert!(report.leader_epochs_rebuilt);
    assert_eq!(report.checkpoint_problems.len(), 3, "{report:?}");
    assert_eq!(
        report.segments_scanned, report.segments,
        "unknown recovery point: everything scanned"
    );
    assert_eq!(
        log.leader_epochs()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(1, 0)]
    );
    assert_survivors(&log, 0..100);
}

#[test]
fn unclean_stop_without_any_damage_loses_nothing() {
    let f = fixture(500, false);
    assert!(!f.path().join("clean-shutdown").exists());
    let (log, report) = f.reopen();
    assert!(!report.clean_shutdown);
    assert!(report.found_no_damage(), "{report:?}");
    assert!(
        report.recovery_point.is_some(),
        "rolls advance the recovery point"
    );
    assert!(
        report.segments_scanned < report.segments,
        "segments before the recovery point are trusted"
    );
    assert_survivors(&log, 0..500);
}

#[test]
fn a_segment_sealed_but_not_yet_fsynced_is_scanned_after_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 200, 5);
    assert!(
        log.sync_if_due().unwrap(),
        "sealed segments wait for an fsync"
    );
    let durable = log.segments().len() - 1;
    fill(&log, 200, 400, 5);
    assert!(log.segments().len() - 1 > durable, "rolled again");
    drop(log);
    let (log, report) = open(dir.path(), small());
    assert!(!report.clean_shutdown);
    assert!(report.found_no_damage(), "{report:?}");
    assert_eq!(
        report.segments - report.segments_scanned,
        durable,
        "only the segments fsynced before the stop are trusted: {report:?}"
    );
    assert_survivors(&log, 0..400);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Random batches of random sizes, then the file is cut at a random byte: recovery keeps exactly the
    /// records that were completely written before the cut.
    #[test]
    fn cut_at_any_byte_keeps_exactly_the_complete_records(
        batches in proptest::collection::vec(proptest::collection::vec(0usize..300, 1..8), 1..12),
        cut_frac in 0.0f64..1.0,
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
        clean in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_max_bytes: 1 << 30, index_interval_bytes: 128, ..small() };
        let mut ends = Vec::new();
        {
            let (log, _) = open(dir.path(), cfg.clone());
            let mut next = 0u64;
            for b in &batches {
                let recs: Vec<_> = b.iter().enumerate().map(|(j, &len)| rec_sized(next + j as u64, len)).collect();
                log.append(1, &recs).unwrap();
                for r in &recs {
                    let len = r.encoded_len().unwrap() as u64;
                    ends.push(ends.last().copied().unwrap_or(0) + len);
                }
                next += recs.len() as u64;
            }
            if clean {
                log.close().unwrap();
            }
        }
        let seg = files(dir.path(), ".log").pop().unwrap();
        let total = *ends.last().unwrap();
        let cut = ((total as f64) * cut_frac) as u64;
        set_len(&seg, cut);
        append_bytes(&seg, &garbage);
        let (log, report) = open(dir.path(), cfg);
        let complete = ends.iter().filter(|&&e| e <= cut).count() as u64;
        let got = log.read(0, usize::MAX, u64::MAX).unwrap();
        prop_assert_eq!(offsets(&got), (0..complete).collect::<Vec<_>>());
        let mut flat = Vec::new();
        for b in &batches { flat.extend(b.iter().copied()); }
        for r in &got {
            let expected = rec_sized(r.offset, flat[r.offset as usize]);
            prop_assert_eq!(&r.value, &expected.value);
            prop_assert_eq!(&r.headers, &expected.headers);
        }
        let kept_bytes = if complete == 0 { 0 } else { ends[complete as usize - 1] };
        prop_assert_eq!(std::fs::metadata(&seg).unwrap().len(), kept_bytes);
        prop_assert_eq!(report.bytes_truncated(), cut + garbage.len() as u64 - kept_bytes);
        prop_assert_eq!(log.end_offset(), complete);
    }
}

#[test]
fn foreign_segment_files_are_refused_and_left_untouched() {
    // A Liftbridge (Go) partition directory: same file names, different record format, no marker.
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join(format!("{:020}.log", 0));
    let mut go_record = Vec::new();
    go_record.extend_from_slice(&0u64.to_be_bytes()); // offset
    go_record.extend_from_slice(&1i64.to_be_bytes()); // timestamp
    go_record.extend_from_slice(&1u64.to_be_bytes()); // leader epoch
    go_record.extend_from_slice(&14u32.to_be_bytes()); // size
    go_record.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 0]); // crc, magic, attributes
    go_record.extend_from_slice(&(-1i32).to_be_bytes());
    go_record.extend_from_slice(&0i32.to_be_bytes());
    fs::write(&seg, &go_record).unwrap();
    fs::write(dir.path().join("00000000000000000000.index.cleaned"), b"x").unwrap();
    fs::write(dir.path().join("replication-offset-checkpoint"), b"0").unwrap();
    match Log::open(dir.path(), small()) {
        Err(LogError::UnknownFormat { path, reason }) => {
            assert_eq!(path, dir.path());
            assert!(reason.contains("no log-format marker"), "{reason}");
        }
        other => panic!("expected UnknownFormat, got {other:?}"),
    }
    assert_eq!(
        fs::read(&seg).unwrap(),
        go_record,
        "nothing was repaired away"
    );
    assert!(
        dir.path()
            .join("00000000000000000000.index.cleaned")
            .exists()
    );
    // A different marker is refused too.
    let f = fixture(10, true);
    fs::write(f.path().join("log-format"), "something else 2\n").unwrap();
    assert!(matches!(
        Log::open(f.path(), small()),
        Err(LogError::UnknownFormat { .. })
    ));
    // A new directory gets the marker.
    let dir = tempfile::tempdir().unwrap();
    let (_log, report) = open(dir.path(), small());
    assert!(!report.has_problems());
    assert_eq!(
        fs::read_to_string(dir.path().join("log-format")).unwrap(),
        "liftbridge-rs commitlog 1\n"
    );
}
