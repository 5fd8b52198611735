//! Commit log benchmarks: append (sync never/always, 128 B / 4 KiB records, batches of 1/100/1000),
//! sequential and reverse reads of 128 B records, and recovery of a 1 GiB log (full scan) vs a clean open.
//!
//! `cargo bench -p liftbridge-server --bench commitlog` (append only: `-- append`). Throughput is reported
//! as records/s and bytes/s, bytes being the encoded size written to disk (32-byte header + body).
//! Data lives in a temporary directory under `$BENCH_DIR` (default: the system temp dir).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use liftbridge_server::commitlog::{Log, LogConfig, NewRecord, RecoveryScan, SyncPolicy};

/// Where benchmark logs are created.
fn bench_root() -> PathBuf {
    std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(bench_root()).expect("temp dir")
}

/// The log configuration of the benchmarks: default segment size, no age-based behaviour.
fn config(sync: SyncPolicy) -> LogConfig {
    LogConfig {
        sync,
        segment_max_age: None,
        retention_max_age: None,
        ..LogConfig::default()
    }
}

fn records(n: usize, size: usize) -> Vec<NewRecord> {
    let value = Bytes::from(vec![b'x'; size]);
    (0..n)
        .map(|i| NewRecord {
            timestamp_ns: 1_700_000_000_000_000_000 + i as i64,
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
        })
        .collect()
}

/// Bytes after which an append benchmark truncates its log (outside the timed region) so the disk does not
/// fill up and the page cache stays bounded.
const RESET_BYTES: u64 = 512 * 1024 * 1024;

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (sync_name, sync) in [("never", SyncPolicy::Never), ("always", SyncPolicy::Always)] {
        for size in [128usize, 4096] {
            for batch in [1usize, 100, 1000] {
                let dir = tempdir();
                let (log, _) = Log::open(dir.path(), config(sync)).expect("open");
                let recs = records(batch, size);
                let encoded: u64 = recs
                    .iter()
                    .map(|r| r.encoded_len().expect("len") as u64)
                    .sum();
                group.throughput(Throughput::ElementsAndBytes {
                    elements: batch as u64,
                    bytes: encoded,
                });
                let id = BenchmarkId::new(format!("{sync_name}/{size}B"), format!("batch{batch}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let mut timed = Duration::ZERO;
                        let mut done = 0;
                        while done < iters {
                            let start = Instant::now();
                            let mut since_reset = log.stats().bytes % RESET_BYTES;
                            while done < iters && since_reset < RESET_BYTES {
                                black_box(log.append(1, &recs).expect("append"));
                                since_reset += encoded;
                                done += 1;
                            }
                            timed += start.elapsed();
                            if since_reset >= RESET_BYTES {
                                log.truncate(log.oldest_offset()).expect("reset");
                            }
                        }
                        timed
                    })
                });
                log.delete().expect("delete");
            }
        }
    }
    group.finish();
}

/// Number of records read per iteration of the read benchmarks.
const READ_PER_ITER: u64 = 200_000;

fn read(c: &mut Criterion) {
    let dir = tempdir();
    let (log, _) = Log::open(dir.path(), config(SyncPolicy::Never)).expect("open");
    let total = 1_000_000u64;
    let recs = records(1000, 128);
    for _ in 0..total / 1000 {
        log.append(1, &recs).expect("append");
    }
    let encoded = recs[0].encoded_len().expect("len") as u64;
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::ElementsAndBytes {
            elements: READ_PER_ITER,
            bytes: READ_PER_ITER * encoded,
        });
    let mut start = 0u64;
    group.bench_function("sequential/128B", |b| {
        b.iter(|| {
            let mut reader = log.reader(start);
            let mut n = 0;
            while n < READ_PER_ITER {
                let batch = reader.read_batch(1 << 20, u64::MAX).expect("read");
                n += batch.len() as u64;
                black_box(batch);
            }
            start = (start + READ_PER_ITER) % (total - READ_PER_ITER);
        })
    });
    let mut start = total - 1;
    group.bench_function("reverse/128B", |b| {
        b.iter(|| {
            let mut reader = log.reverse_reader(start);
            let mut n = 0;
            while n < READ_PER_ITER {
                let batch = reader.next_batch(1 << 20).expect("read");
                n += batch.len() as u64;
                black_box(batch);
            }
            start = if start < 2 * READ_PER_ITER {
                total - 1
            } else {
                start - READ_PER_ITER
            };
        })
    });
    group.finish();
    log.delete().expect("delete");
}

fn recovery(c: &mut Criterion) {
    let dir = tempdir();
    let gib = 1u64 << 30;
    let cfg = config(SyncPolicy::Never);
    {
        let (log, _) = Log::open(dir.path(), cfg.clone()).expect("open");
        let recs = records(1000, 128);
        while log.stats().bytes < gib {
            log.append(1, &recs).expect("append");
        }
        log.close().expect("close");
    }
    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(12))
        .throughput(Throughput::Bytes(gib));
    let full = LogConfig {
        recovery_scan: RecoveryScan::Full,
        ..cfg.clone()
    };
    group.bench_function("open_full_scan/1GiB", |b| {
        b.iter(|| {
            let (log, report) = Log::open(dir.path(), full.clone()).expect("open");
            assert!(report.records_scanned > 5_000_000 && report.found_no_damage());
            black_box(log);
        })
    });
    group.throughput(Throughput::Elements(1));
    {
        let (log, _) = Log::open(dir.path(), cfg.clone()).expect("open");
        log.close().expect("close");
    }
    group.bench_function("open_after_clean_close/1GiB", |b| {
        b.iter(|| {
            let (log, report) = Log::open(dir.path(), cfg.clone()).expect("open");
            assert!(report.clean_shutdown);
            log.close().expect("close");
        })
    });
    group.finish();
}

criterion_group!(benches, append, read, recovery);
criterion_main!(benches);
