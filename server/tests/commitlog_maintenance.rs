//! Commit log: truncation, retention, compaction, leader-epoch cache, checkpoints.

mod commitlog_util;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commitlog_util::*;
use liftbridge_server::commitlog::{
    EpochEndOffset, Log, LogConfig, NewRecord, Record, RecoveryScan,
};

fn epochs(log: &Log) -> Vec<(u64, u64)> {
    log.leader_epochs()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// 300 records in small segments, epochs 1 (0..100), 2 (100..200), 3 (200..300), HW 299.
fn three_epochs(dir: &std::path::Path) -> Log {
    let (log, _) = open(dir, small());
    for (epoch, from) in [(1u64, 0u64), (2, 100), (3, 200)] {
        let batch: Vec<_> = (from..from + 100).map(rec).collect();
        for c in batch.chunks(10) {
            log.append(epoch, c).unwrap();
        }
    }
    log.set_high_watermark(299).unwrap();
    log
}

#[test]
fn truncate_inside_a_sealed_segment_cuts_log_hw_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_epochs(dir.path());
    let segs_before = log.segments();
    let mut rx = log.subscribe();
    rx.borrow_and_update();
    log.truncate(150).unwrap();
    assert!(rx.has_changed().unwrap());
    let p = *rx.borrow_and_update();
    assert_eq!(
        (p.end_offset, p.high_watermark, p.truncations),
        (150, 149, 1)
    );
    assert_eq!(
        (log.end_offset(), log.newest_offset(), log.high_watermark()),
        (150, 149, 149)
    );
    assert_eq!(epochs(&log), vec![(1, 0), (2, 100)]);
    let all = read_all(&log);
    assert_eq!(offsets(&all), (0..150).collect::<Vec<_>>());
    all.iter().for_each(|r| check(r, 20));
    // Later segments are gone from disk; the cut segment is now the active one.
    let segs = log.segments();
    assert!(segs.last().unwrap().base_offset <= 150);
    assert_eq!(segs.last().unwrap().next_offset, 150);
    for s in segs_before.iter().filter(|s| s.base_offset > 150) {
        assert!(!s.path.exists(), "{:?} should be deleted", s.path);
    }
    // Appends continue at the cut with a new epoch; lookups work in the cut segment.
    let info = log.append(4, &[rec(150), rec(151)]).unwrap();
    assert_eq!(info.first_offset, 150);
    assert_eq!(epochs(&log), vec![(1, 0), (2, 100), (4, 150)]);
    assert_eq!(
        log.offset_for_timestamp(rec(149).timestamp_ns).unwrap(),
        Some(149)
    );
    assert_eq!(log.read_reverse(151, usize::MAX).unwrap().len(), 152);
    drop(log);
    let (log, report) = open(
        dir.path(),
        LogConfig {
            recovery_scan: RecoveryScan::Full,
            ..small()
        },
    );
    assert!(report.found_no_damage(), "{report:?}");
    assert_eq!(offsets(&read_all(&log)), (0..152).collect::<Vec<_>>());
    assert_eq!(epochs(&log), vec![(1, 0), (2, 100), (4, 150)]);
    assert_eq!(
        log.high_watermark(),
        -1,
        "HW was never checkpointed after the cut"
    );
}

#[test]
fn truncate_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_epochs(dir.path());
    // At or past the end: nothing happens.
    log.truncate(300).unwrap();
    log.truncate(1000).unwrap();
    assert_eq!(log.end_offset(), 300);
    assert_eq!(log.position().truncations, 0);
    // Exactly at a segment base.
    let base = log.segments()[3].base_offset;
    log.truncate(base).unwrap();
    assert_eq!(log.end_offset(), base);
    assert_eq!(offsets(&read_all(&log)), (0..base).collect::<Vec<_>>());
    // Everything.
    log.truncate(0).unwrap();
    assert_eq!(
        (log.end_offset(), log.newest_offset(), log.high_watermark()),
        (0, -1, -1)
    );
    assert!(read_all(&log).is_empty());
    assert!(epochs(&log).is_empty());
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.append(9, &[rec(0)]).unwrap().first_offset, 0);
    log.close().unwrap();
    drop(log);
    let (log, report) = open(dir.path(), small());
    assert!(report.clean_shutdown);
    assert_eq!(offsets(&read_all(&log)), vec![0]);
    assert_eq!(epochs(&log), vec![(9, 0)]);
}

#[test]
fn truncate_below_the_oldest_offset_restarts_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_max_messages: Some(60),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg.clone());
    fill(&log, 0, 300, 10);
    log.enforce_retention(SystemTime::now()).unwrap();
    let oldest = log.oldest_offset();
    assert!(oldest > 100);
    log.truncate(100).unwrap();
    assert_eq!((log.oldest_offset(), log.end_offset()), (100, 100));
    assert_eq!(log.segments().len(), 1);
    assert_eq!(files(dir.path(), ".log").len(), 1);
    assert_eq!(log.append(2, &[rec(100)]).unwrap().first_offset, 100);
    drop(log);
    let (log, _) = open(dir.path(), cfg);
    assert_eq!((log.oldest_offset(), log.end_offset()), (100, 101));
    assert_eq!(offsets(&read_all(&log)), vec![100]);
}

#[test]
fn retention_by_bytes_deletes_oldest_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 600, 10);
    let segs = log.segments();
    let n = segs.len();
    let total: u64 = segs.iter().map(|s| s.size_bytes).sum();
    drop(log);
    let limit = total / 2;
    let cfg = LogConfig {
        retention_max_bytes: Some(limit),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    let report = log.enforce_retention(SystemTime::now()).unwrap();
    let after: u64 = log.segments().iter().map(|s| s.size_bytes).sum();
    assert!(after <= limit, "{after} > {limit}");
    assert!(
        after + segs[report.deleted_segments.len() - 1].size_bytes > limit,
        "deleted no more than needed"
    );
    assert_eq!(report.by_bytes, report.deleted_segments.len());
    assert_eq!(
        report.deleted_segments,
        segs.iter()
            .take(report.deleted_segments.len())
            .map(|s| s.base_offset)
            .collect::<Vec<_>>()
    );
    assert_eq!(report.oldest_offset, log.oldest_offset());
    assert_eq!(log.segments().len(), n - report.deleted_segments.len());
    for s in segs.iter().take(report.deleted_segments.len()) {
        assert!(!s.path.exists());
        assert!(!s.path.with_extension("index").exists());
        assert!(!s.path.with_extension("timeindex").exists());
    }
    // Reads below the oldest start at the oldest.
    assert_eq!(
        log.read(0, 0, u64::MAX).unwrap()[0].offset,
        log.oldest_offset()
    );
    assert_eq!(
        offsets(&read_all(&log)),
        (log.oldest_offset()..600).collect::<Vec<_>>()
    );
    // The active segment is never deleted, whatever the limit.
    drop(log);
    let (log, _) = open(
        dir.path(),
        LogConfig {
            retention_max_bytes: Some(1),
            ..small()
        },
    );
    log.enforce_retention(SystemTime::now()).unwrap();
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.end_offset(), 600);
    assert!(!read_all(&log).is_empty());
}

#[test]
fn retention_by_messages_and_epoch_cache_follow_the_oldest_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_epochs(dir.path());
    drop(log);
    let cfg = LogConfig {
        retention_max_messages: Some(150),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    let report = log.enforce_retention(SystemTime::now()).unwrap();
    let oldest = log.oldest_offset();
    assert!(300 - oldest <= 150, "{oldest}");
    assert!(oldest > 100);
    assert_eq!(report.by_messages, report.deleted_segments.len());
    // Epoch 2 started before the oldest remaining record: its start moves up; epoch 1 is gone.
    assert_eq!(epochs(&log), vec![(2, oldest), (3, 200)]);
    drop(log);
    let (log, _) = open(dir.path(), small());
    assert_eq!(epochs(&log), vec![(2, oldest), (3, 200)]);
    assert_eq!(log.oldest_offset(), oldest);
}

#[test]
fn retention_by_age_uses_the_newest_timestamp_of_each_segment() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let now_ns = now.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    let hour = 3_600_000_000_000i64;
    let cfg = LogConfig {
        retention_max_age: Some(Duration::from_secs(3600)),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    // 200 records three hours old, then 10 fresh ones, then one old one again (only a prefix is deleted).
    for i in 0..200u64 {
        log.append(
            1,
            &[NewRecord::new(now_ns - 3 * hour + i as i64, vec![b'o'; 50])],
        )
        .unwrap();
    }
    let old_segments = log.segments().len();
    for _ in 0..10 {
        log.append(1, &[NewRecord::new(now_ns, vec![b'n'; 50])])
            .unwrap();
    }
    let report = log.enforce_retention(now).unwrap();
    assert!(report.by_age >= old_segments - 1, "{report:?}");
    for s in log.segments() {
        assert!(
            s.max_timestamp_ns.unwrap() >= now_ns - hour
                || s.base_offset == log.segments().last().unwrap().base_offset
        );
    }
    let first_kept = read_all(&log)[0].offset;
    assert_eq!(first_kept, log.oldest_offset());
    // Nothing left to delete on the next pass.
    assert!(
        log.enforce_retention(now)
            .unwrap()
            .deleted_segments
            .is_empty()
    );
}

/// A record for the compaction tests: key `k<i % 7>` except every 5th record, which is unkeyed.
fn keyed(i: u64) -> NewRecord {
    let r = rec(i);
    if i.is_multiple_of(5) {
        r
    } else {
        r.with_key(format!("k{}", i % 7))
    }
}

#[test]
fn compaction_keeps_newest_per_key_up_to_hw_unkeyed_and_everything_above() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    const N: u64 = 500;
    let all: Vec<NewRecord> = (0..N).map(keyed).collect();
    for c in all.chunks(10) {
        log.append(1, c).unwrap();
    }
    let hw = 300i64;
    log.set_high_watermark(hw).unwrap();
    let segs = log.segments();
    let active_base = segs.last().unwrap().base_offset;
    let bytes_before: u64 = segs.iter().map(|s| s.size_bytes).sum();

    let report = log.compact(hw).unwrap();
    assert!(!report.aborted);
    assert_eq!(report.distinct_keys, 7);
    assert!(report.segments_rewritten + report.segments_removed > 0);
    let bytes_after: u64 = log.segments().iter().map(|s| s.size_bytes).sum();
    assert_eq!(bytes_before - bytes_after, report.bytes_freed);

    // Model: newest offset per key among offsets <= hw.
    let mut latest: HashMap<String, u64> = HashMap::new();
    for i in 0..=hw as u64 {
        if i % 5 != 0 {
            latest.insert(format!("k{}", i % 7), i);
        }
    }
    let expected: Vec<u64> = (0..N)
        .filter(|&i| {
            i > hw as u64 || i >= active_base || i % 5 == 0 || latest[&format!("k{}", i % 7)] == i
        })
        .collect();
    assert_eq!(report.records_removed, N - expected.len() as u64);
    let check_log = |log: &Log| {
        let got: Vec<Record> = read_all(log);
        assert_eq!(offsets(&got), expected);
        for r in &got {
            let e = keyed(r.offset);
            assert_eq!(
                (&r.key, &r.value, r.timestamp_ns),
                (&e.key, &e.value, e.timestamp_ns)
            );
        }
        // Reads that start in a gap skip forward; reverse reads and timestamp lookups see the same set.
        let gap = (0..N).find(|o| !expected.contains(o)).unwrap();
        let next = *expected.iter().find(|&&o| o > gap).unwrap();
        assert_eq!(log.read(gap, 0, u64::MAX).unwrap()[0].offset, next);
        let rev = log.read_reverse(N, usize::MAX).unwrap();
        assert_eq!(
            offsets(&rev),
            expected.iter().rev().copied().collect::<Vec<_>>()
        );
        assert_eq!(
            log.offset_for_timestamp(rec(gap).timestamp_ns).unwrap(),
            Some(next)
        );
    };
    check_log(&log);
    // Compaction is idempotent.
    let again = log.compact(hw).unwrap();
    assert_eq!((again.records_removed, again.segments_rewritten), (0, 0));
    // It survives reopening (clean and full verification) without any repair.
    log.close().unwrap();
    drop(log);
    assert!(files(dir.path(), ".cleaned").is_empty());
    let (log, report) = open(dir.path(), small());
    assert!(
        report.found_no_damage() && report.index_repairs.is_empty(),
        "{report:?}"
    );
    check_log(&log);
    drop(log);
    let (log, report) = open(
        dir.path(),
        LogConfig {
            recovery_scan: RecoveryScan::Full,
            ..small()
        },
    );
    assert!(
        report.found_no_damage() && report.index_repairs.is_empty(),
        "{report:?}"
    );
    check_log(&log);
    // Appends continue normally.
    assert_eq!(log.append(1, &[keyed(N)]).unwrap().first_offset, N);
}

#[test]
fn compaction_removes_emptied_segments_and_ignores_a_negative_hw() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    // The same key over and over: every sealed segment below the HW becomes empty except the newest.
    for i in 0..300u64 {
        log.append(1, &[rec(i).with_key("same")]).unwrap();
    }
    assert_eq!(log.compact(-1).unwrap().records_removed, 0);
    let segs = log.segments();
    let before = segs.len();
    let report = log.compact(299).unwrap();
    assert!(report.segments_removed > 0);
    assert_eq!(log.segments().len(), before - report.segments_removed);
    // Only the active segment's records survive (the newest "same" <= 299 is in the active segment).
    let active_base = segs.last().unwrap().base_offset;
    assert_eq!(
        offsets(&read_all(&log)),
        (active_base..300).collect::<Vec<_>>()
    );
    assert_eq!(log.oldest_offset(), log.segments()[0].base_offset);
}

#[test]
fn leader_epoch_cache_kip101() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    assert_eq!(log.end_offset_for_leader_epoch(1), None);
    assert!(log.assign_leader_epoch(1, 0).unwrap());
    assert!(
        !log.assign_leader_epoch(1, 0).unwrap(),
        "same epoch again: no change"
    );
    fill(&log, 0, 20, 5);
    assert!(log.assign_leader_epoch(3, 20).unwrap());
    let batch: Vec<_> = (20..30).map(rec).collect();
    log.append(3, &batch).unwrap();
    // Appending with a newer epoch assigns it at the batch's first offset.
    log.append(5, &[rec(30), rec(31)]).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 20), (5, 30)]);
    assert_eq!(log.latest_leader_epoch(), Some(5));
    let eo = |e| log.end_offset_for_leader_epoch(e);
    assert_eq!(
        eo(5),
        Some(EpochEndOffset {
            epoch: 5,
            end_offset: 32
        })
    );
    assert_eq!(
        eo(3),
        Some(EpochEndOffset {
            epoch: 3,
            end_offset: 30
        })
    );
    assert_eq!(
        eo(4),
        Some(EpochEndOffset {
            epoch: 3,
            end_offset: 30
        })
    );
    assert_eq!(
        eo(1),
        Some(EpochEndOffset {
            epoch: 1,
            end_offset: 20
        })
    );
    assert_eq!(
        eo(0),
        Some(EpochEndOffset {
            epoch: 0,
            end_offset: 0
        })
    );
    assert_eq!(eo(6), None);
    // Older epochs are ignored; a start beyond the end is refused.
    assert!(!log.assign_leader_epoch(2, 32).unwrap());
    assert!(log.assign_leader_epoch(6, 40).is_err());
    // Persisted on every change, in the documented format.
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n3\n1 0\n3 20\n5 30\n");
    // A follower's truncation with the answer removes exactly the divergent suffix.
    log.truncate(eo(3).unwrap().end_offset).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 20)]);
    assert_eq!(log.end_offset(), 30);
    drop(log);
    let (log, _) = open(dir.path(), small());
    assert_eq!(epochs(&log), vec![(1, 0), (3, 20)]);
}

#[test]
fn epoch_cache_is_clamped_when_recovery_cuts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 20, 5);
    log.append(2, &[rec(20)]).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (2, 20)]);
    let seg = log.segments().last().unwrap().path.clone();
    drop(log);
    // The record of epoch 2 is torn away by a crash.
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (log, report) = open(dir.path(), small());
    assert_eq!(report.end_offset, 20);
    assert_eq!(epochs(&log), vec![(1, 0)]);
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n1\n1 0\n");
}

#[test]
fn checkpoints_are_atomic_under_concurrent_readers() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 100, 10);
    log.set_high_watermark(0).unwrap();
    log.checkpoint_high_watermark().unwrap();
    let path = dir.path().join("replication-offset-checkpoint");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).expect("the checkpoint always exists");
                let mut lines = text.lines();
                assert_eq!(lines.next(), Some("0"), "partial checkpoint: {text:?}");
                let v: i64 = lines.next().unwrap().parse().expect("complete value");
                assert!((0..100).contains(&v));
                assert_eq!(lines.next(), None);
                reads += 1;
            }
            reads
        })
    };
    for hw in 0..100 {
        log.set_high_watermark(hw).unwrap();
        log.checkpoint_high_watermark().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert!(files(dir.path(), ".tmp").is_empty());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n99\n");
}

#[test]
fn readers_run_concurrently_with_appends_rolls_retention_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_max_messages: Some(3000),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    const N: u64 = 6_000;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ r;
                let mut batches = 0u64;
                while !done.load(Ordering::Relaxed) {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let end = log.end_offset().max(1);
                    let start = (x >> 33) % end;
                    let got = if r == 2 {
                        let mut v = log.read_reverse(start, 3000).unwrap();
                        v.reverse();
                        v
                    } else {
                        log.read(start, 3000, u64::MAX).unwrap()
                    };
                    for w in got.windows(2) {
                        assert!(w[0].offset < w[1].offset);
                    }
                    for rec in &got {
                        let e = keyed(rec.offset);
                        assert_eq!(
                            (&rec.key, &rec.value),
                            (&e.key, &e.value),
                            "offset {}",
                            rec.offset
                        );
                    }
                    batches += 1;
                }
                batches
            })
        })
        .collect();
    let mut i = 0;
    while i < N {
        let batch: Vec<_> = (i..i + 10).map(keyed).collect();
        log.append(1, &batch).unwrap();
        i += 10;
        log.set_high_watermark(i as i64 - 1).unwrap();
        if i % 500 == 0 {
            log.enforce_retention(SystemTime::now()).unwrap();
            log.compact(log.high_watermark()).unwrap();
        }
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(log.oldest_offset() > 0);
    let all = read_all(&log);
    assert_eq!(all.last().unwrap().offset, N - 1);
}
