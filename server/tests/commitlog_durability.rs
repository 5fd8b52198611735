//! Commit log: sync policies, group commit, and failed writes (fault injection).

mod commitlog_util;

use std::sync::Arc;
use std::time::Duration;

use commitlog_util::*;
use liftbridge_server::commitlog::testing::{FaultTarget, FaultyStorage};
use liftbridge_server::commitlog::{
    Log, LogConfig, LogError, NewRecord, RecoveryReport, SyncPolicy,
};

fn open_faulty(dir: &std::path::Path, cfg: LogConfig) -> (Log, FaultyStorage, RecoveryReport) {
    let faults = FaultyStorage::new();
    let (log, report) = Log::open_with_storage(dir, cfg, Arc::new(faults.clone())).unwrap();
    (log, faults, report)
}

/// The recovery point on disk (the file is a version line, then the offset).
fn recovery_point(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("recovery-point-checkpoint"))
        .ok()
        .and_then(|s| s.lines().nth(1).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn sync_always_fsyncs_every_batch_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync: SyncPolicy::Always,
        ..small()
    };
    let (log, faults, _) = open_faulty(dir.path(), cfg);
    let before = faults.syncs();
    for i in 0..20 {
        let info = log.append(1, &[rec(i)]).unwrap();
        assert!(info.synced);
        let s = log.stats();
        assert_eq!(
            s.synced_bytes, s.written_bytes,
            "durable before append returned"
        );
    }
    assert!(
        faults.syncs() - before >= 20,
        "one fsync per sequential batch"
    );
}

#[test]
fn sync_never_only_fsyncs_sealed_segments_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(
        dir.path(),
        LogConfig {
            segment_max_bytes: 1 << 20,
            ..small()
        },
    );
    let before = faults.syncs();
    for i in 0..50 {
        assert!(!log.append(1, &[rec(i)]).unwrap().synced);
    }
    assert_eq!(faults.syncs(), before);
    assert!(log.stats().synced_bytes < log.stats().written_bytes);
    log.close().unwrap();
    assert!(faults.syncs() > before);
    assert_eq!(log.stats().synced_bytes, log.stats().written_bytes);
    // A roll does not fsync the segment it seals (that would stall the append path); the owner's ticker
    // (`sync_if_due`) does, under every policy, and only then moves the recovery point past it.
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(dir.path(), small());
    let before = faults.syncs();
    fill(&log, 0, 200, 10);
    let rolls = log.stats().rolls;
    assert!(rolls > 0);
    assert_eq!(faults.syncs(), before, "no fsync on the append path");
    let active_base = log.segments().last().unwrap().base_offset;
    assert!(
        recovery_point(dir.path()).is_none_or(|p| p < active_base),
        "the sealed segments are not known durable yet"
    );
    assert!(
        log.sync_if_due().unwrap(),
        "sealed segments wait for an fsync"
    );
    assert!(
        faults.syncs() - before > rolls,
        "every sealed segment and the active one"
    );
    assert_eq!(recovery_point(dir.path()), Some(active_base));
    let after = faults.syncs();
    assert!(!log.sync_if_due().unwrap(), "nothing sealed since");
    assert_eq!(faults.syncs(), after);
    // Close fsyncs what a roll sealed since.
    fill(&log, 200, 400, 10);
    assert!(log.stats().rolls > rolls);
    let before_close = faults.syncs();
    log.close().unwrap();
    assert!(faults.syncs() - before_close > log.stats().rolls - rolls);
    assert_eq!(log.stats().synced_bytes, log.stats().written_bytes);
}

#[test]
fn truncation_fsyncs_sealed_segments_and_moves_the_recovery_point_to_the_cut_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(dir.path(), small());
    fill(&log, 0, 300, 10);
    let segs = log.segments();
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let before = faults.syncs();
    // Into the second segment: it becomes the active one; the segments after it go.
    let cut = segs[1].base_offset + 2;
    log.truncate(cut).unwrap();
    assert!(
        faults.syncs() - before >= segs.len() as u64,
        "every sealed segment was fsynced (their data files), and the cut one"
    );
    assert_eq!(recovery_point(dir.path()), Some(segs[1].base_offset));
    assert_eq!(log.stats().synced_bytes, log.stats().written_bytes);
    // New rolls after the cut are not trusted by an unclean open until an fsync covered them.
    fill(&log, cut, cut + 150, 10);
    assert!(log.segments().len() > 2);
    drop(log);
    let (log, report) = commitlog_util::open(dir.path(), small());
    assert!(!report.clean_shutdown);
    assert_eq!(report.segments - report.segments_scanned, 1, "{report:?}");
    assert_eq!(log.end_offset(), cut + 150);
}

#[test]
fn truncation_moves_a_recovery_point_beyond_the_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open_faulty(dir.path(), small());
    fill(&log, 0, 300, 10);
    assert!(log.sync_if_due().unwrap());
    let segs = log.segments();
    assert_eq!(
        recovery_point(dir.path()),
        Some(segs.last().unwrap().base_offset)
    );
    log.truncate(segs[1].base_offset + 2).unwrap();
    assert_eq!(recovery_point(dir.path()), Some(segs[1].base_offset));
}

#[test]
fn a_failed_fsync_of_a_sealed_segment_fails_the_log_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(dir.path(), small());
    fill(&log, 0, 200, 10);
    assert!(log.stats().rolls > 0);
    let point_before = recovery_point(dir.path());
    faults.fail_sync(true);
    assert!(
        log.sync_if_due().is_err(),
        "the sealed segment's fsync failed"
    );
    assert!(log.is_failed());
    // Healed, a later fsync may succeed, but it proves nothing about pages the kernel may have dropped: nothing
    // is marked durable again, and the recovery point does not move past the failed segment.
    faults.heal();
    assert!(log.sync().is_err());
    let s = log.stats();
    assert!(s.synced_bytes < s.written_bytes);
    assert!(
        log.close().is_err(),
        "close does not claim a clean, durable log"
    );
    assert_eq!(recovery_point(dir.path()), point_before);
    assert!(!dir.path().join("clean-shutdown").exists());
    drop(log);
    let (log, report) = commitlog_util::open(dir.path(), small());
    assert!(!report.clean_shutdown);
    assert_eq!(offsets(&read_all(&log)), (0..200).collect::<Vec<_>>());
}

#[test]
fn a_segment_sealed_on_an_idle_log_is_fsynced_by_the_next_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync: SyncPolicy::Always,
        segment_max_age: Some(Duration::from_secs(60)),
        ..small()
    };
    let (log, faults, _) = open_faulty(dir.path(), cfg);
    fill(&log, 0, 5, 5);
    let s = log.stats();
    assert_eq!(
        s.synced_bytes, s.written_bytes,
        "everything written is durable"
    );
    // An age roll with nothing new to sync: the sealed segment still gets its fsync and the recovery point.
    let before = faults.syncs();
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    assert!(log.maintain(later).unwrap().rolled);
    assert!(faults.syncs() > before);
    assert_eq!(recovery_point(dir.path()), Some(5));
}

#[test]
fn sync_interval_fsyncs_when_due_and_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync: SyncPolicy::Interval(Duration::from_secs(3600)),
        ..small()
    };
    let (log, faults, _) = open_faulty(dir.path(), cfg);
    let before = faults.syncs();
    log.append(1, &[rec(0)]).unwrap();
    assert!(!log.sync_if_due().unwrap(), "an hour has not passed");
    assert_eq!(faults.syncs(), before);
    log.sync().unwrap();
    assert_eq!(faults.syncs(), before + 1);
    assert_eq!(log.stats().synced_bytes, log.stats().written_bytes);
    // Already durable: another sync is free.
    log.sync().unwrap();
    assert_eq!(faults.syncs(), before + 1);
    drop(log);

    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync: SyncPolicy::Interval(Duration::from_nanos(1)),
        ..small()
    };
    let (log, faults, _) = open_faulty(dir.path(), cfg);
    let before = faults.syncs();
    assert!(
        log.append(1, &[rec(0)]).unwrap().synced,
        "the interval elapsed: synced on append"
    );
    assert!(faults.syncs() > before);
    assert!(!log.sync_if_due().unwrap(), "nothing new to sync");
    log.append(1, &[rec(1)]).unwrap();
    let s = log.stats();
    assert_eq!(s.synced_bytes, s.written_bytes);
}

#[test]
fn group_commit_with_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync: SyncPolicy::Always,
        segment_max_bytes: 64 * 1024,
        ..small()
    };
    let (log, faults, _) = open_faulty(dir.path(), cfg);
    const THREADS: u64 = 4;
    const PER: u64 = 150;
    let before = faults.syncs();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..PER {
                    let value = format!("t{t}-{i}");
                    let info = log
                        .append(1, &[NewRecord::new(i as i64, value.clone())])
                        .unwrap();
                    // Durable when append returns: the group commit covered this batch.
                    assert!(info.synced);
                    mine.push((info.first_offset, value));
                }
                mine
            })
        })
        .collect();
    let mut expected: Vec<(u64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    expected.sort();
    // Contiguous offsets, every record where its appender was told it is.
    assert_eq!(
        expected.iter().map(|e| e.0).collect::<Vec<_>>(),
        (0..THREADS * PER).collect::<Vec<_>>()
    );
    let all = read_all(&log);
    assert_eq!(all.len() as u64, THREADS * PER);
    for (r, (o, v)) in all.iter().zip(&expected) {
        assert_eq!(r.offset, *o);
        assert_eq!(r.value.as_deref(), Some(v.as_bytes()));
    }
    let stats = log.stats();
    assert_eq!(stats.synced_bytes, stats.written_bytes);
    let fsyncs = faults.syncs() - before;
    assert!(
        fsyncs < THREADS * PER,
        "group commit shares fsyncs: {fsyncs} for {} appends",
        THREADS * PER
    );
    eprintln!(
        "group commit: {fsyncs} fsyncs for {} appends",
        THREADS * PER
    );
}

#[test]
fn a_failed_write_is_rolled_back_and_the_log_stays_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(
        dir.path(),
        LogConfig {
            segment_max_bytes: 1 << 20,
            ..small()
        },
    );
    fill(&log, 0, 20, 5);
    let seg = log.segments()[0].clone();
    // Disk full in the middle of the next batch: its prefix reaches the file, then the write fails.
    faults.fail_writes_after(100);
    let batch: Vec<_> = (20..30).map(rec).collect();
    match log.append(1, &batch) {
        Err(LogError::Io { op, path, .. }) => {
            assert_eq!(op, "write segment");
            assert_eq!(path, seg.path);
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    assert!(faults.injected() > 0);
    assert!(!log.is_failed());
    assert_eq!(log.end_offset(), 20);
    assert_eq!(
        std::fs::metadata(&seg.path).unwrap().len(),
        seg.size_bytes,
        "partial write rolled back"
    );
    assert_eq!(offsets(&read_all(&log)), (0..20).collect::<Vec<_>>());
    // Still full: fails again, still consistent.
    assert!(log.append(1, &batch).is_err());
    assert_eq!(log.end_offset(), 20);
    // Space is back: the same offsets are assigned.
    faults.heal();
    assert_eq!(log.append(1, &batch).unwrap().first_offset, 20);
    fill(&log, 30, 40, 5);
    let all = read_all(&log);
    assert_eq!(offsets(&all), (0..40).collect::<Vec<_>>());
    all.iter().for_each(|r| check(r, 20));
    drop(log);
    let (log, report) = open(dir.path(), small());
    assert!(report.found_no_damage(), "{report:?}");
    assert_eq!(offsets(&read_all(&log)), (0..40).collect::<Vec<_>>());
}

#[test]
fn a_failed_write_that_cannot_be_rolled_back_fails_the_log_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(
        dir.path(),
        LogConfig {
            segment_max_bytes: 1 << 20,
            ..small()
        },
    );
    fill(&log, 0, 20, 5);
    faults.fail_writes_after(100);
    faults.fail_set_len(true);
    let batch: Vec<_> = (20..30).map(rec).collect();
    assert!(matches!(log.append(1, &batch), Err(LogError::Io { .. })));
    assert!(log.is_failed());
    faults.heal();
    // Refuses appends even though the disk is fine now; readers still see exactly the good records.
    assert!(matches!(
        log.append(1, &batch),
        Err(LogError::Failed { .. })
    ));
    assert!(matches!(log.truncate(5), Err(LogError::Failed { .. })));
    assert_eq!(offsets(&read_all(&log)), (0..20).collect::<Vec<_>>());
    log.close().unwrap_or(());
    drop(log);
    assert!(
        !dir.path().join("clean-shutdown").exists(),
        "a failed log never claims a clean shutdown"
    );
    // Reopening recovers: the torn part of the failed batch's 100-byte prefix is cut. A record of the
    // failed (never acknowledged) batch that was completely written before the failure is valid and kept,
    // like any unacknowledged write that reached the disk.
    let (log, report) = open(dir.path(), small());
    let first = rec(20).encoded_len().unwrap() as u64;
    assert!(first < 100 && first + rec(21).encoded_len().unwrap() as u64 > 100);
    assert_eq!(report.truncated_segments.len(), 1, "{report:?}");
    assert_eq!(report.truncated_segments[0].first_lost_offset, 21);
    assert_eq!(report.truncated_segments[0].bytes_removed, 100 - first);
    assert_eq!(offsets(&read_all(&log)), (0..21).collect::<Vec<_>>());
    assert_eq!(log.append(1, &batch[1..]).unwrap().first_offset, 21);
}

#[test]
fn a_failed_fsync_fails_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync: SyncPolicy::Always,
        ..small()
    };
    let (log, faults, _) = open_faulty(dir.path(), cfg);
    fill(&log, 0, 10, 5);
    faults.fail_sync(true);
    match log.append(1, &[rec(10)]) {
        Err(LogError::Io {
            op: "fsync segment",
            ..
        }) => {}
        other => panic!("expected an fsync error, got {other:?}"),
    }
    assert!(log.is_failed());
    faults.heal();
    assert!(matches!(
        log.append(1, &[rec(11)]),
        Err(LogError::Failed { .. })
    ));
    drop(log);
    let (log, _) = open(dir.path(), small());
    // The record whose fsync failed may or may not have survived; everything acknowledged did.
    let got = offsets(&read_all(&log));
    assert!(
        got == (0..10).collect::<Vec<_>>() || got == (0..11).collect::<Vec<_>>(),
        "{got:?}"
    );
}

#[test]
fn nth_write_failure_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(dir.path(), small());
    fill(&log, 0, 10, 5);
    faults.fail_nth_write(1);
    assert!(log.append(1, &[rec(10)]).is_err());
    assert_eq!(log.append(1, &[rec(10)]).unwrap().first_offset, 10);
    assert_eq!(offsets(&read_all(&log)), (0..11).collect::<Vec<_>>());
}

#[test]
fn index_write_failures_do_not_fail_appends_but_force_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults, _) = open_faulty(dir.path(), small());
    faults.target(FaultTarget::Indexes);
    faults.fail_writes_after(0);
    fill(&log, 0, 300, 10);
    assert!(faults.injected() > 0);
    assert!(!log.is_failed());
    assert_eq!(offsets(&read_all(&log)), (0..300).collect::<Vec<_>>());
    log.close().unwrap();
    drop(log);
    assert!(
        !dir.path().join("clean-shutdown").exists(),
        "indexes are incomplete: no clean marker"
    );
    let (log, report) = open(dir.path(), small());
    assert!(!report.clean_shutdown);
    assert!(!report.index_repairs.is_empty());
    assert_eq!(offsets(&read_all(&log)), (0..300).collect::<Vec<_>>());
    assert_eq!(
        log.offset_for_timestamp(rec(123).timestamp_ns).unwrap(),
        Some(123)
    );
}

#[test]
fn sync_always_preallocates_and_trims_on_roll_close_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync: SyncPolicy::Always,
        preallocate_bytes: 8 * 1024,
        ..small()
    };
    let (log, _) = open(dir.path(), cfg.clone());
    fill(&log, 0, 100, 10);
    let segs = log.segments();
    assert!(segs.len() > 1);
    // Sealed segments were trimmed to their data when rolled; the active one has zeros beyond its data.
    for s in &segs[..segs.len() - 1] {
        assert_eq!(std::fs::metadata(&s.path).unwrap().len(), s.size_bytes);
    }
    let active = segs.last().unwrap();
    assert!(std::fs::metadata(&active.path).unwrap().len() >= active.size_bytes + 4 * 1024);
    assert_eq!(offsets(&read_all(&log)), (0..100).collect::<Vec<_>>());
    drop(log);
    // Crash: recovery trims the zeros and loses nothing.
    let (log, report) = open(dir.path(), cfg.clone());
    assert_eq!(report.truncated_segments.len(), 1, "{report:?}");
    let t = &report.truncated_segments[0];
    assert!(t.reason.contains("zero-filled"), "{}", t.reason);
    assert_eq!(t.first_lost_offset, 100);
    assert_eq!(
        std::fs::metadata(&active.path).unwrap().len(),
        active.size_bytes
    );
    assert_eq!(offsets(&read_all(&log)), (0..100).collect::<Vec<_>>());
    fill(&log, 100, 150, 10);
    // A clean close trims too, so the next open finds nothing to repair.
    log.close().unwrap();
    let last = log.segments().last().unwrap().clone();
    assert_eq!(
        std::fs::metadata(&last.path).unwrap().len(),
        last.size_bytes
    );
    drop(log);
    let (log, report) = open(dir.path(), cfg);
    assert!(
        report.clean_shutdown && !report.has_problems(),
        "{report:?}"
    );
    assert_eq!(offsets(&read_all(&log)), (0..150).collect::<Vec<_>>());
}
