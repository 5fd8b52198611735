//! Commit log: the async tail reader and the watch channel.

mod commitlog_util;

use std::time::{Duration, SystemTime};

use commitlog_util::*;
use liftbridge_server::commitlog::{LogConfig, LogError, ReadBound};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakes_when_records_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    let mut tail = log.tail_reader(0);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 100 {
            let batch = tail.next_batch(10_000, ReadBound::LogEnd).await.unwrap();
            assert!(!batch.is_empty());
            got.extend(batch);
        }
        got
    });
    let writer = log.clone();
    std::thread::spawn(move || {
        for i in 0..100 {
            writer.append(1, &[rec(i)]).unwrap();
        }
    });
    let got = timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(offsets(&got), (0..100).collect::<Vec<_>>());
    got.iter().for_each(|r| check(r, 20));
}

#[tokio::test(start_paused = true)]
async fn high_watermark_bound_waits_for_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 10, 10);
    let mut tail = log.tail_reader(0);
    // Nothing committed yet: the reader waits (virtual time; the timeout fires without real sleeping).
    assert!(
        timeout(
            Duration::from_secs(1),
            tail.next_batch(1 << 20, ReadBound::HighWatermark)
        )
        .await
        .is_err()
    );
    log.set_high_watermark(4).unwrap();
    let b = timeout(WAIT, tail.next_batch(1 << 20, ReadBound::HighWatermark))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets(&b), vec![0, 1, 2, 3, 4]);
    assert!(
        timeout(
            Duration::from_secs(1),
            tail.next_batch(1 << 20, ReadBound::HighWatermark)
        )
        .await
        .is_err()
    );
    // The log end bound sees the uncommitted records right away.
    let mut uncommitted = log.tail_reader(5);
    let b = timeout(WAIT, uncommitted.next_batch(1 << 20, ReadBound::LogEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets(&b), vec![5, 6, 7, 8, 9]);
    // A HW advance wakes a waiting reader.
    let waiting =
        tokio::spawn(async move { tail.next_batch(1 << 20, ReadBound::HighWatermark).await });
    tokio::task::yield_now().await;
    log.set_high_watermark(9).unwrap();
    let b = timeout(WAIT, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(offsets(&b), vec![5, 6, 7, 8, 9]);
}

#[tokio::test]
async fn truncation_below_the_position_is_reported_until_the_caller_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    fill(&log, 0, 10, 10);
    let mut tail = log.tail_reader(0);
    let b = timeout(WAIT, tail.next_batch(1 << 20, ReadBound::LogEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.len(), 10);
    assert_eq!(tail.position(), 10);
    // A new leader's history diverges at 5 and the log grows past the reader again before it looks.
    log.truncate(5).unwrap();
    log.append(
        2,
        &[rec(5), rec(6), rec(7), rec(8), rec(9), rec(10), rec(11)],
    )
    .unwrap();
    for _ in 0..2 {
        match timeout(WAIT, tail.next_batch(1 << 20, ReadBound::LogEnd))
            .await
            .unwrap()
        {
            Err(LogError::Truncated {
                position: 10,
                end_offset: 5,
            }) => {}
            other => panic!("expected Truncated, got {other:?}"),
        }
    }
    tail.seek(5);
    let b = timeout(WAIT, tail.next_batch(1 << 20, ReadBound::LogEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets(&b), (5..12).collect::<Vec<_>>());
    assert!(b.iter().all(|r| r.leader_epoch == 2));
    // A truncation above the reader's position does not bother it.
    log.truncate(11).unwrap();
    log.append(3, &[rec(11), rec(12)]).unwrap();
    let b = timeout(WAIT, tail.next_batch(1 << 20, ReadBound::LogEnd))
        .await
        .unwrap();
    assert!(
        matches!(
            b,
            Err(LogError::Truncated {
                position: 12,
                end_offset: 11
            })
        ),
        "{b:?}"
    );
}

#[tokio::test]
async fn falling_below_the_oldest_offset_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_max_messages: Some(50),
        ..small()
    };
    let (log, _) = open(dir.path(), cfg);
    fill(&log, 0, 300, 10);
    let mut tail = log.tail_reader(0);
    let b = timeout(WAIT, tail.next_batch(100, ReadBound::LogEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b[0].offset, 0);
    let report = log.enforce_retention(SystemTime::now()).unwrap();
    assert!(!report.deleted_segments.is_empty());
    let oldest = log.oldest_offset();
    assert!(oldest > tail.position());
    match timeout(WAIT, tail.next_batch(100, ReadBound::LogEnd))
        .await
        .unwrap()
    {
        Err(LogError::OffsetOutOfRange {
            oldest: o,
            end: 300,
            ..
        }) => assert_eq!(o, oldest),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    tail.seek(oldest);
    let b = timeout(WAIT, tail.next_batch(100, ReadBound::LogEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b[0].offset, oldest);
    // A reader created below the oldest offset starts at the oldest.
    let mut late = log.tail_reader(0);
    assert_eq!(late.position(), oldest);
    let b = timeout(WAIT, late.next_batch(0, ReadBound::LogEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets(&b), vec![oldest]);
}

#[tokio::test]
async fn close_wakes_waiting_readers() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    let mut tail = log.tail_reader(0);
    let waiting = tokio::spawn(async move { tail.next_batch(1000, ReadBound::LogEnd).await });
    tokio::task::yield_now().await;
    log.close().unwrap();
    let r = timeout(WAIT, waiting).await.unwrap().unwrap();
    assert!(matches!(r, Err(LogError::Closed)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_followers_see_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small());
    const N: u64 = 2000;
    let mut tasks = Vec::new();
    for r in 0..4 {
        let mut tail = log.tail_reader(0);
        tasks.push(tokio::spawn(async move {
            let mut next = 0;
            while next < N {
                let bound = if r % 2 == 0 {
                    ReadBound::LogEnd
                } else {
                    ReadBound::HighWatermark
                };
                for rec in tail.next_batch(700, bound).await.unwrap() {
                    assert_eq!(rec.offset, next);
                    check(&rec, 20);
                    next += 1;
                }
            }
        }));
    }
    let writer = log.clone();
    let w = std::thread::spawn(move || {
        let mut i = 0;
        while i < N {
            let n = (i % 7 + 1).min(N - i);
            let batch: Vec<_> = (i..i + n).map(rec).collect();
            writer.append(1, &batch).unwrap();
            i += n;
            writer.set_high_watermark(i as i64 - 1).unwrap();
        }
    });
    for t in tasks {
        timeout(WAIT, t).await.unwrap().unwrap();
    }
    w.join().unwrap();
    assert!(log.segments().len() > 10);
}
