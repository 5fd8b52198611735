//! Commit log: appends, reads, offsets, rolls, reverse reads, timestamp lookup, replication bytes.

mod commitlog_util;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use commitlog_util::*;
use liftbridge_server::commitlog::{Log, LogConfig, LogError, NewRecord, RecoveryScan};

#[test]
fn round_trip_of_every_field_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!(report.end_offset, 0);
    let batch = vec![
        NewRecord::new(-7, "plain"),
        NewRecord::new(1, "keyed").with_key("k1"),
        NewRecord {
            timestamp_ns: 2,
            key: Some(Bytes::new()),
            value: None,
            headers: vec![(key("a"), Bytes::new()), (key(""), key("empty-name"))],
        },
        NewRecord::new(3, vec![0u8; 100_000]),
    ];
    let info = log.append(9, &batch).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.records),
        (0, 3, 4)
    );
    let got = log.read(0, usize::MAX, u64::MAX).unwrap();
    assert_eq!(got.len(), 4);
    for (i, (r, n)) in got.iter().zip(&batch).enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.leader_epoch, 9);
        assert_eq!(r.timestamp_ns, n.timestamp_ns);
        assert_eq!(r.key, n.key);
        assert_eq!(r.value, n.value);
        assert_eq!(r.headers, n.headers);
        assert_eq!(r.encoded_len(), n.encoded_len().unwrap());
    }
    assert_eq!(log.stats().records, 4);
    assert_eq!(
        log.stats().bytes,
        batch
            .iter()
            .map(|r| r.encoded_len().unwrap() as u64)
            .sum::<u64>()
    );
}

#[test]
fn reads_honour_start_max_bytes_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 300, 7);
    let one = rec(10).encoded_len().unwrap();
    // At least one record even with max_bytes 0.
    assert_eq!(offsets(&log.read(5, 0, u64::MAX).unwrap()), vec![5]);
    // max_bytes is respected (records are all the same size here).
    assert_eq!(log.read(10, one * 3, u64::MAX).unwrap().len(), 3);
    assert_eq!(log.read(10, one * 3 + one / 2, u64::MAX).unwrap().len(), 3);
    // limit is exclusive and may cut inside a segment.
    assert_eq!(
        offsets(&log.read(100, usize::MAX, 104).unwrap()),
        vec![100, 101, 102, 103]
    );
    assert!(log.read(104, usize::MAX, 104).unwrap().is_empty());
    // Past the end: nothing.
    assert!(log.read(300, usize::MAX, u64::MAX).unwrap().is_empty());
    assert!(log.read(10_000, usize::MAX, u64::MAX).unwrap().is_empty());
    // Everything, across segments, in order, with the right contents.
    let all = log.read(0, usize::MAX, u64::MAX).unwrap();
    assert_eq!(offsets(&all), (0..300).collect::<Vec<_>>());
    all.iter().for_each(|r| check(r, 20));
    // A sequential reader returns the same thing in small batches.
    let batched = read_all(&log);
    assert_eq!(offsets(&batched), offsets(&all));
}

#[test]
fn rolls_by_size_and_reopens_cleanly_without_scanning_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    {
        let (log, _) = open(dir.path(), cfg.clone());
        fill(&log, 0, 1000, 10);
        let segs = log.segments();
        assert!(
            segs.len() > 10,
            "expected many segments, got {}",
            segs.len()
        );
        let batch_bytes = 10 * rec(0).encoded_len().unwrap() as u64;
        for w in segs.windows(2) {
            assert_eq!(
                w[0].next_offset, w[1].base_offset,
                "segments are contiguous"
            );
            assert!(
                w[0].size_bytes <= cfg.segment_max_bytes,
                "sealed segment within the limit"
            );
            assert!(
                w[0].size_bytes + batch_bytes > cfg.segment_max_bytes,
                "rolled only when full"
            );
        }
        assert_eq!(log.stats().rolls as usize, segs.len() - 1);
        assert_eq!(files(dir.path(), ".log").len(), segs.len());
        assert_eq!(files(dir.path(), ".index").len(), segs.len());
        assert_eq!(files(dir.path(), ".timeindex").len(), segs.len());
        // Names are the zero-padded base offsets.
        let name = files(dir.path(), ".log")[1]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(name, format!("{:020}.log", segs[1].base_offset));
        log.close().unwrap();
        assert!(dir.path().join("clean-shutdown").exists());
    }
    let (log, report) = open(dir.path(), cfg.clone());
    assert!(report.clean_shutdown);
    assert!(
        !dir.path().join("clean-shutdown").exists(),
        "marker removed on open"
    );
    assert_eq!(
        report.segments_scanned, 1,
        "only the tail of the active segment: {report:?}"
    );
    assert!(report.records_scanned < 30, "tail scan only: {report:?}");
    assert!(
        report.found_no_damage() && !report.has_problems(),
        "{report:?}"
    );
    assert_eq!(log.end_offset(), 1000);
    let all = read_all(&log);
    assert_eq!(offsets(&all), (0..1000).collect::<Vec<_>>());
    all.iter().for_each(|r| check(r, 20));
    // Appends continue where the log ended.
    assert_eq!(log.append(1, &[rec(1000)]).unwrap().first_offset, 1000);
    drop(log);
    // An unclean stop: the segments after the recovery point are scanned, everything survives.
    let (log, report) = open(dir.path(), cfg.clone());
    assert!(!report.clean_shutdown);
    assert!(report.segments_scanned >= 1 && report.segments_scanned < report.segments);
    assert!(report.found_no_damage(), "{report:?}");
    assert_eq!(log.end_offset(), 1001);
    drop(log);
    let (_, report) = open(
        dir.path(),
        LogConfig {
            recovery_scan: RecoveryScan::Full,
            ..cfg
        },
    );
    assert_eq!(report.segments_scanned, report.segments);
    assert_eq!(report.records_scanned, 1001);
    assert!(report.found_no_damage(), "{report:?}");
}

#[test]
fn rolls_by_age_on_append_and_in_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_max_age: Some(Duration::from_secs(3600)),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    // Fresh records: no roll.
    log.append(
        1,
        &[NewRecord::new(now_ns, "a"), NewRecord::new(now_ns, "b")],
    )
    .unwrap();
    log.append(1, &[NewRecord::new(now_ns, "c")]).unwrap();
    assert_eq!(log.segments().len(), 1);
    // maintain() with a clock two hours ahead rolls the non-empty active segment.
    let later = SystemTime::now() + Duration::from_secs(7200);
    assert!(log.maintain(later).unwrap().rolled);
    assert_eq!(log.segments().len(), 2);
    assert_eq!(log.segments()[1].base_offset, 3);
    // An empty active segment is never rolled.
    assert!(!log.maintain(later).unwrap().rolled);
    // Age counts from the first write (wall clock), not from record timestamps: old records do not roll.
    log.append(1, &[NewRecord::new(now_ns - 2 * 3_600_000_000_000, "old")])
        .unwrap();
    log.append(1, &[NewRecord::new(now_ns, "new")]).unwrap();
    assert_eq!(log.segments().len(), 2);
    assert_eq!(offsets(&read_all(&log)), vec![0, 1, 2, 3, 4]);
    drop(log);

    // The check also runs on append: with a tiny max age every append after the first one rolls.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_max_age: Some(Duration::from_nanos(1)),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    fill(&log, 0, 4, 1);
    assert_eq!(
        log.segments()
            .iter()
            .map(|s| s.base_offset)
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn offsets_high_watermark_and_watch_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    assert_eq!(
        (log.oldest_offset(), log.newest_offset(), log.end_offset()),
        (0, -1, 0)
    );
    assert_eq!(log.high_watermark(), -1);
    let mut rx = log.subscribe();
    assert_eq!(rx.borrow_and_update().end_offset, 0);
    fill(&log, 0, 10, 10);
    assert!(rx.has_changed().unwrap());
    let p = *rx.borrow_and_update();
    assert_eq!(
        (p.end_offset, p.high_watermark, p.oldest_offset),
        (10, -1, 0)
    );
    assert_eq!((log.newest_offset(), log.end_offset()), (9, 10));
    log.set_high_watermark(5).unwrap();
    assert_eq!(rx.borrow_and_update().high_watermark, 5);
    assert!(matches!(
        log.set_high_watermark(10),
        Err(LogError::HighWatermarkBeyondEnd {
            requested: 10,
            newest: 9
        })
    ));
    assert_eq!(log.high_watermark(), 5);
    log.set_high_watermark(9).unwrap();
    assert_eq!(rx.borrow_and_update().high_watermark, 9);
    log.checkpoint_high_watermark().unwrap();
    let text = std::fs::read_to_string(dir.path().join("replication-offset-checkpoint")).unwrap();
    assert_eq!(text, "0\n9\n");
    // No change, no notification.
    log.set_high_watermark(9).unwrap();
    assert!(!rx.has_changed().unwrap());
    drop(log);
    let (log, report) = open(dir.path(), small());
    assert_eq!(log.high_watermark(), 9);
    assert_eq!(report.high_watermark, 9);
}

#[test]
fn high_watermark_checkpoint_is_written_only_when_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("replication-offset-checkpoint");
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 10, 10);
    log.set_high_watermark(4).unwrap();
    log.checkpoint_high_watermark().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n4\n");
    // Unchanged: the periodic checkpoint of an idle partition writes (and fsyncs) nothing.
    std::fs::remove_file(&file).unwrap();
    log.checkpoint_high_watermark().unwrap();
    assert!(!file.exists());
    log.set_high_watermark(7).unwrap();
    log.checkpoint_high_watermark().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n7\n");
    // A truncation below the high watermark moves it back, which is written too.
    log.truncate(3).unwrap();
    log.checkpoint_high_watermark().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n2\n");
    // Closing always writes it.
    std::fs::remove_file(&file).unwrap();
    log.close().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n2\n");
}

#[test]
fn high_watermark_restored_on_open_is_clamped_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 10, 10);
    log.set_high_watermark(9).unwrap();
    log.close().unwrap();
    drop(log);
    // Someone else's (or an older) checkpoint claims more than the log holds.
    std::fs::write(dir.path().join("replication-offset-checkpoint"), "0\n50\n").unwrap();
    let (log, report) = open(dir.path(), small());
    assert_eq!(log.high_watermark(), 9);
    assert!(
        report
            .checkpoint_problems
            .iter()
            .any(|p| p.contains("clamped")),
        "{report:?}"
    );
    drop(log);
    std::fs::write(dir.path().join("replication-offset-checkpoint"), "garbage").unwrap();
    let (log, report) = open(dir.path(), small());
    assert_eq!(log.high_watermark(), -1);
    assert!(report.has_problems());
}

#[test]
fn reverse_reads_go_newest_to_oldest_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    assert!(log.read_reverse(5, 1000).unwrap().is_empty(), "empty log");
    fill(&log, 0, 400, 13);
    assert!(log.segments().len() > 5);
    let all = log.read_reverse(399, usize::MAX).unwrap();
    assert_eq!(offsets(&all), (0..400).rev().collect::<Vec<_>>());
    all.iter().for_each(|r| check(r, 20));
    // Clamped to the newest.
    assert_eq!(log.read_reverse(10_000, 0).unwrap()[0].offset, 399);
    // In small batches from the middle.
    let one = rec(0).encoded_len().unwrap();
    let mut r = log.reverse_reader(250);
    let mut got = Vec::new();
    loop {
        let b = r.next_batch(one * 7).unwrap();
        if b.is_empty() {
            break;
        }
        assert!(b.len() <= 7);
        got.extend(b);
    }
    assert_eq!(offsets(&got), (0..=250).rev().collect::<Vec<_>>());
    assert_eq!(r.next_offset(), None);
    // max_bytes 0 still returns one record.
    assert_eq!(offsets(&log.read_reverse(17, 0).unwrap()), vec![17]);
}

#[test]
fn timestamp_lookup_with_monotonic_and_non_monotonic_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    fill(&log, 0, 300, 9);
    assert_eq!(log.offset_for_timestamp(i64::MIN).unwrap(), Some(0));
    assert_eq!(
        log.offset_for_timestamp(rec(137).timestamp_ns).unwrap(),
        Some(137)
    );
    assert_eq!(
        log.offset_for_timestamp(rec(137).timestamp_ns + 1).unwrap(),
        Some(138)
    );
    assert_eq!(
        log.offset_for_timestamp(rec(299).timestamp_ns + 1).unwrap(),
        None
    );

    // Non-monotonic: a pseudo-random walk with big jumps back and forth.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    let mut ts = Vec::new();
    let mut x: u64 = 12345;
    for i in 0..600u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let t = (x >> 40) as i64 % 10_000 + if i % 50 == 0 { 20_000 } else { 0 };
        ts.push(t);
    }
    for (chunk_no, chunk) in ts.chunks(11).enumerate() {
        let batch: Vec<NewRecord> = chunk
            .iter()
            .enumerate()
            .map(|(j, &t)| NewRecord::new(t, format!("v{}", chunk_no * 11 + j)))
            .collect();
        log.append(1, &batch).unwrap();
    }
    let expect = |target: i64| ts.iter().position(|&t| t >= target).map(|p| p as u64);
    let check_all = |log: &Log| {
        for target in (-100..31_000)
            .step_by(97)
            .chain([0, 9_999, 10_000, 20_000, 29_999, 30_000])
        {
            assert_eq!(
                log.offset_for_timestamp(target).unwrap(),
                expect(target),
                "target {target}"
            );
        }
    };
    check_all(&log);
    log.close().unwrap();
    drop(log);
    let (log, _) = open(dir.path(), small());
    check_all(&log);
    drop(log);
    // After index rebuilds too.
    for p in files(dir.path(), ".timeindex") {
        std::fs::remove_file(p).unwrap();
    }
    let (log, report) = open(dir.path(), small());
    assert!(!report.index_repairs.is_empty());
    check_all(&log);
}

/// Copies `leader` into `follower` the way replication does: raw fetches appended as they are.
fn replicate(leader: &Log, follower: &Log, max_bytes: usize) -> usize {
    let mut fetches = 0;
    loop {
        let bytes = leader
            .read_raw(follower.end_offset(), max_bytes, leader.end_offset())
            .unwrap();
        if bytes.is_empty() {
            return fetches;
        }
        fetches += 1;
        follower.append_raw(&bytes).unwrap();
    }
}

#[test]
fn raw_reads_replicate_one_log_into_another() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, _) = open(d1.path(), small());
    let (follower, _) = open(
        d2.path(),
        LogConfig {
            segment_max_bytes: 10_000,
            ..small()
        },
    );
    for epoch in [1u64, 1, 4, 4, 7] {
        let from = leader.end_offset();
        let batch: Vec<NewRecord> = (from..from + 60).map(rec).collect();
        leader.append(epoch, &batch).unwrap();
    }
    let fetches = replicate(&leader, &follower, 1500);
    assert!(fetches > 10, "many bounded fetches ({fetches})");
    let (a, b) = (read_all(&leader), read_all(&follower));
    assert_eq!(a, b);
    assert_eq!(follower.end_offset(), 300);
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    assert_eq!(
        leader
            .leader_epochs()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(1, 0), (4, 120), (7, 240)]
    );
    // Respecting a limit and max bytes.
    let raw = leader.read_raw(10, 0, u64::MAX).unwrap();
    assert_eq!(
        raw.len(),
        rec(10).encoded_len().unwrap(),
        "one whole record"
    );
    assert!(leader.read_raw(10, usize::MAX, 10).unwrap().is_empty());
    // Overlap is refused, and so is damage; nothing is written.
    let again = leader.read_raw(290, 10_000, u64::MAX).unwrap();
    assert!(matches!(
        follower.append_raw(&again),
        Err(LogError::NonContiguousAppend {
            expected: 300,
            found: 290
        })
    ));
    leader.append(7, &[rec(300), rec(301)]).unwrap();
    let mut next = leader.read_raw(300, 10_000, u64::MAX).unwrap().to_vec();
    let last = next.len() - 1;
    next[last] ^= 0x40;
    assert!(matches!(
        follower.append_raw(&next),
        Err(LogError::Corrupt { .. })
    ));
    next.truncate(next.len() - 3);
    assert!(matches!(
        follower.append_raw(&next),
        Err(LogError::Corrupt { .. })
    ));
    assert_eq!(follower.end_offset(), 300);
    replicate(&leader, &follower, 1 << 20);
    assert_eq!(read_all(&leader), read_all(&follower));
}

#[test]
fn oversize_records_and_bad_batches_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_record_bytes: 1000,
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    fill(&log, 0, 3, 3);
    let size = log.segments()[0].size_bytes;
    let batch = vec![rec(3), rec_sized(4, 2000), rec(5)];
    assert!(matches!(
        log.append(1, &batch),
        Err(LogError::RecordTooLarge { max: 1000, .. })
    ));
    assert!(matches!(
        log.append(1, &[]),
        Err(LogError::InvalidRecord { .. })
    ));
    let huge_name = NewRecord::new(0, "x").with_header(vec![b'n'; 70_000], "v");
    assert!(matches!(
        log.append(1, &[huge_name]),
        Err(LogError::InvalidRecord { .. })
    ));
    assert_eq!(log.end_offset(), 3);
    assert_eq!(log.segments()[0].size_bytes, size);
    assert_eq!(
        std::fs::metadata(&log.segments()[0].path).unwrap().len(),
        size
    );
    // An older leader epoch is fenced.
    log.append(5, &[rec(3)]).unwrap();
    assert!(matches!(
        log.append(4, &[rec(4)]),
        Err(LogError::StaleLeaderEpoch {
            epoch: 4,
            latest: 5
        })
    ));
    assert_eq!(offsets(&read_all(&log)), vec![0, 1, 2, 3]);
}

#[test]
fn directory_is_locked_and_closed_logs_refuse_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    assert!(matches!(
        Log::open(dir.path(), small()),
        Err(LogError::Locked { .. })
    ));
    fill(&log, 0, 5, 5);
    let clone = log.clone();
    log.close().unwrap();
    assert!(matches!(clone.append(1, &[rec(5)]), Err(LogError::Closed)));
    assert!(clone.position().closed);
    // Reads of what is there still work until the handles go away.
    assert_eq!(clone.read(0, usize::MAX, u64::MAX).unwrap().len(), 5);
    log.close().unwrap();
    drop((log, clone));
    let (log, report) = open(dir.path(), small());
    assert!(report.clean_shutdown);
    assert_eq!(log.end_offset(), 5);
    log.delete().unwrap();
    assert!(!dir.path().exists());
}

#[test]
fn invalid_configurations_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        LogConfig {
            segment_max_bytes: 10,
            ..LogConfig::default()
        },
        LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        },
        LogConfig {
            max_record_bytes: 5,
            ..LogConfig::default()
        },
        LogConfig {
            sync: liftbridge_server::commitlog::SyncPolicy::Interval(Duration::ZERO),
            ..LogConfig::default()
        },
    ] {
        assert!(matches!(
            Log::open(dir.path(), cfg),
            Err(LogError::InvalidConfig(_))
        ));
    }
    let d = LogConfig::default();
    assert_eq!(d.segment_max_bytes, 256 * 1024 * 1024);
    assert_eq!(d.retention_max_age, Some(Duration::from_secs(168 * 3600)));
    assert_eq!(d.segment_max_age, d.retention_max_age);
    assert_eq!(
        (d.retention_max_bytes, d.retention_max_messages),
        (None, None)
    );
    assert_eq!(d.index_interval_bytes, 4096);
}

#[test]
fn handles_are_cheap_send_and_sync() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<Log>();
    send::<liftbridge_server::commitlog::Reader>();
    send::<liftbridge_server::commitlog::ReverseReader>();
    send::<liftbridge_server::commitlog::TailReader>();
    assert_eq!(
        std::mem::size_of::<Log>(),
        std::mem::size_of::<usize>(),
        "one Arc"
    );
}
