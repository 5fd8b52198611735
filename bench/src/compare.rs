//! The side-by-side suite: every workload on a fresh standalone `liftbridge` (embedded NATS, one process), on
//! `liftbridge` with an external `nats-server`, and on a fresh `nats-server -js`, back to back, repeated;
//! then medians, ratios (ours / JetStream), server memory and the binary size as markdown.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::report::{Report, thousands};
use crate::server::{Memory, PidFile, ServerProcess, free_port};
use crate::target::Target;
use crate::workload::{SyncPolicy, Workload};
use crate::{BenchError, Result, consumer, producer};

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a single measured run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Options of `compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareOptions {
    /// The `liftbridge` server binary (release build).
    #[arg(long, default_value = "target/release/liftbridge")]
    pub liftbridge: PathBuf,
    /// The `nats-server` binary (JetStream, and the external broker).
    #[arg(long, default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// Repetitions of every workload (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A short run: a tenth of the messages, one repetition (unless --repeats is given too).
    #[arg(long)]
    pub quick: bool,
    /// Our sync policy for the page-cache workloads (`never` or `interval`; `always` has its own workload).
    #[arg(long, value_enum, default_value_t = SyncPolicy::Interval)]
    pub page_sync: SyncPolicy,
    /// Only these workloads (ids, comma-separated; see `--list`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Lists the workloads and exits.
    #[arg(long)]
    pub list: bool,
    /// Directory for results (`results.md`, `results.json`) and scratch data.
    #[arg(long, default_value = "target/bench-compare")]
    pub out_dir: PathBuf,
    /// Free text recorded with the results (e.g. the commit measured).
    #[arg(long)]
    pub label: Option<String>,
    /// Keeps the pids of running servers in this file (for a wrapper's cleanup).
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
}

/// How the system under test is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Deployment {
    /// `liftbridge` with its embedded NATS broker: one server process.
    Standalone,
    /// `liftbridge` on an external `nats-server`: two server processes.
    External,
    /// `nats-server -js`: one server process.
    JetStream,
}

impl Deployment {
    /// All three, in run order.
    pub const ALL: [Deployment; 3] = [
        Deployment::Standalone,
        Deployment::External,
        Deployment::JetStream,
    ];

    /// Column title.
    pub fn title(self) -> &'static str {
        match self {
            Deployment::Standalone => "liftbridge standalone",
            Deployment::External => "liftbridge + nats-server",
            Deployment::JetStream => "JetStream",
        }
    }
}

/// What a suite entry measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Publish the workload and measure it.
    Produce,
    /// Publish the workload unmeasured, then read it all back from the start and measure that.
    Consume,
}

/// One workload of the suite.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteEntry {
    /// Short id (for `--only`).
    pub id: &'static str,
    /// Row title.
    pub title: &'static str,
    /// What is measured.
    pub phase: Phase,
    /// The workload (the sync policy says how our server is started).
    pub workload: Workload,
}

/// The workloads of the issue, with message counts for a full run (`quick` divides them by ten).
pub fn suite(quick: bool, page_sync: SyncPolicy) -> Vec<SuiteEntry> {
    let n = |full: u64| if quick { (full / 10).max(1000) } else { full };
    let w = |messages: u64, size: usize, window: usize, batch: usize, publishers: usize| Workload {
        messages: n(messages),
        size,
        window,
        pub_batch: batch,
        publishers,
        sync: page_sync,
        ..Workload::default()
    };
    let entry = |id, title, phase, workload| SuiteEntry {
        id,
        title,
        phase,
        workload,
    };
    vec![
        entry(
            "sync",
            "128 B sync publish, 1 publisher",
            Phase::Produce,
            w(20_000, 128, 1, 1, 1),
        ),
        entry(
            "window",
            "128 B pipelined, window 256",
            Phase::Produce,
            w(300_000, 128, 256, 1, 1),
        ),
        entry(
            "batch",
            "128 B batch-100",
            Phase::Produce,
            w(300_000, 128, 1, 100, 1),
        ),
        entry(
            "pubs4",
            "128 B, 4 publishers × window 64",
            Phase::Produce,
            w(300_000, 128, 64, 1, 4),
        ),
        entry(
            "1k",
            "1 KiB pipelined, window 256",
            Phase::Produce,
            w(150_000, 1024, 256, 1, 1),
        ),
        entry(
            "16k",
            "16 KiB pipelined, window 64",
            Phase::Produce,
            w(20_000, 16384, 64, 1, 1),
        ),
        entry(
            "rate",
            "128 B at a fixed 20k msg/s (window 256): latency",
            Phase::Produce,
            Workload {
                rate: 20_000.0,
                ..w(100_000, 128, 256, 1, 1)
            },
        ),
        entry(
            "consume",
            "consume from the start, 128 B",
            Phase::Consume,
            w(1_000_000, 128, 256, 1, 4),
        ),
        entry(
            "always",
            "128 B pipelined, window 256, fsync before ack",
            Phase::Produce,
            Workload {
                sync: SyncPolicy::Always,
                ..w(200_000, 128, 256, 1, 1)
            },
        ),
    ]
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Suite entry id.
    pub id: String,
    /// Where it ran.
    pub deployment: Deployment,
    /// Repetition (0-based).
    pub repeat: usize,
    /// The measurement, if the run succeeded.
    pub report: Option<Report>,
    /// Why it failed.
    pub error: Option<String>,
    /// Memory of the measured server before the load (stream created).
    pub idle: Option<Memory>,
    /// Memory of the measured server after the load (`hwm_kib` is the peak).
    pub loaded: Option<Memory>,
    /// External deployment: the `nats-server`'s memory after the load.
    pub broker_loaded: Option<Memory>,
    /// CPU seconds the server processes (liftbridge and its nats-server, or JetStream's nats-server) used
    /// during the measured phase.
    pub server_cpu_secs: Option<f64>,
    /// CPU seconds the bench process (the client) used during the measured phase.
    pub client_cpu_secs: Option<f64>,
}

/// The servers of one deployment, started for one run.
struct Running {
    servers: Vec<ServerProcess>,
    target: Target,
}

impl Running {
    /// The server whose memory is reported (liftbridge, or nats-server for JetStream).
    fn measured(&self) -> Option<&ServerProcess> {
        self.servers.last()
    }

    /// CPU seconds used so far by all its server processes.
    fn cpu_secs(&self) -> Option<f64> {
        self.servers.iter().map(ServerProcess::cpu_secs).sum()
    }

    /// The external broker (external deployment only).
    fn broker(&self) -> Option<&ServerProcess> {
        (self.servers.len() > 1).then(|| &self.servers[0])
    }

    async fn stop(self) -> Result<()> {
        let mut first = Ok(());
        for s in self.servers.into_iter().rev() {
            let r = s.stop().await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Settings shared by every run of one `compare`.
struct Env<'a> {
    opts: &'a CompareOptions,
    pids: PidFile,
    work: PathBuf,
}

impl Env<'_> {
    fn nats_server(&self, name: &str, dir: &Path, jetstream: bool) -> Result<(ServerProcess, u16)> {
        let port = free_port()?;
        let mut args = vec![
            "-a".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        if jetstream {
            args.extend([
                "-js".into(),
                "-sd".into(),
                dir.join("jetstream").display().to_string(),
            ]);
        }
        let p = ServerProcess::spawn(
            name,
            &self.opts.nats_server,
            &args,
            &dir.join(format!("{name}.log")),
            &self.pids,
        )?;
        Ok((p, port))
    }

    fn liftbridge(
        &self,
        dir: &Path,
        sync: SyncPolicy,
        nats_port: Option<u16>,
    ) -> Result<(ServerProcess, u16)> {
        let port = free_port()?;
        let policy = match sync {
            SyncPolicy::Never => "never",
            SyncPolicy::Always => "always",
            SyncPolicy::Interval | SyncPolicy::Unstated => "interval",
        };
        let mut yaml = format!(
            "listen: 127.0.0.1:{port}\nhost: 127.0.0.1\nport: {port}\ndata.dir: {}\nlogging.level: warn\n\
             streams.sync.policy: {policy}\n",
            dir.join("data").display()
        );
        match nats_port {
            Some(np) => yaml += &format!("nats.servers: [\"nats://127.0.0.1:{np}\"]\n"),
            None => yaml += "nats.embedded.host: 127.0.0.1\nnats.embedded.port: 0\n",
        }
        let config = dir.join("liftbridge.yaml");
        std::fs::write(&config, yaml)?;
        let p = ServerProcess::spawn(
            "liftbridge",
            &self.opts.liftbridge,
            &["-c".to_string(), config.display().to_string()],
            &dir.join("liftbridge.log"),
            &self.pids,
        )?;
        Ok((p, port))
    }

    async fn start(&self, deployment: Deployment, sync: SyncPolicy, dir: &Path) -> Result<Running> {
        std::fs::create_dir_all(dir)?;
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        match deployment {
            Deployment::JetStream => {
                let (mut s, port) = self.nats_server("nats-server", dir, true)?;
                s.wait_listening(loopback(port), START_TIMEOUT).await?;
                Ok(Running {
                    servers: vec![s],
                    target: Target::JetStream {
                        url: format!("nats://127.0.0.1:{port}"),
                    },
                })
            }
            Deployment::Standalone | Deployment::External => {
                let mut servers = Vec::new();
                let mut nats_port = None;
                if deployment == Deployment::External {
                    let (mut n, port) = self.nats_server("nats-server", dir, false)?;
                    n.wait_listening(loopback(port), START_TIMEOUT).await?;
                    servers.push(n);
                    nats_port = Some(port);
                }
                let (mut l, port) = self.liftbridge(dir, sync, nats_port)?;
                l.wait_listening(loopback(port), START_TIMEOUT).await?;
                servers.push(l);
                let target = Target::Liftbridge {
                    addrs: vec![format!("127.0.0.1:{port}")],
                };
                Ok(Running { servers, target })
            }
        }
    }

    /// Fresh servers, the stream, the measured phase, memory, stop.
    async fn run_one(
        &self,
        entry: &SuiteEntry,
        deployment: Deployment,
        repeat: usize,
    ) -> RunRecord {
        let mut record = RunRecord {
            id: entry.id.to_string(),
            deployment,
            repeat,
            report: None,
            error: None,
            idle: None,
            loaded: None,
            broker_loaded: None,
            server_cpu_secs: None,
            client_cpu_secs: None,
        };
        let dir = self
            .work
            .join(format!("{}-{deployment:?}-{repeat}", entry.id));
        let _ = std::fs::remove_dir_all(&dir);
        let running = match self.start(deployment, entry.workload.sync, &dir).await {
            Ok(r) => r,
            Err(e) => {
                record.error = Some(e.to_string());
                return record;
            }
        };
        let measured = async {
            // The server may take a moment to elect itself metadata leader: retry creating the stream.
            let deadline = std::time::Instant::now() + START_TIMEOUT;
            loop {
                match running.target.prepare_stream(&entry.workload, true).await {
                    Ok(()) => break,
                    Err(_) if std::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            record.idle = running.measured().and_then(ServerProcess::memory);
            let own = || crate::server::cpu_secs_of(std::process::id());
            let mut cpu_before = running.cpu_secs();
            let mut client_before = own();
            let report = match entry.phase {
                Phase::Produce => {
                    producer::run(&running.target, &entry.workload, false, true).await
                }
                Phase::Consume => {
                    let load = producer::run(&running.target, &entry.workload, false, true).await?;
                    if !load.is_complete() {
                        return Err(BenchError::Invalid(format!(
                            "preload incomplete: {} of {} ({} errors: {:?})",
                            load.messages, entry.workload.messages, load.errors, load.first_error
                        )));
                    }
                    cpu_before = running.cpu_secs();
                    client_before = own();
                    consumer::run(&running.target, &entry.workload, true).await
                }
            }?;
            if let (Some(before), Some(after)) = (cpu_before, running.cpu_secs()) {
                record.server_cpu_secs = Some(after - before);
            }
            if let (Some(before), Some(after)) = (client_before, own()) {
                record.client_cpu_secs = Some(after - before);
            }
            Ok(report)
        };
        match tokio::time::timeout(RUN_TIMEOUT, measured).await {
            Ok(Ok(report)) => record.report = Some(report),
            Ok(Err(e)) => record.error = Some(e.to_string()),
            Err(_) => record.error = Some(format!("run exceeded {RUN_TIMEOUT:?}")),
        }
        record.loaded = running.measured().and_then(ServerProcess::memory);
        record.broker_loaded = running.broker().and_then(ServerProcess::memory);
        if let Err(e) = running.stop().await {
            record.error.get_or_insert(format!("stopping: {e}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
        record
    }
}

/// Runs the suite and writes `results.md` and `results.json` into the output directory. Returns the markdown.
pub async fn run(opts: &CompareOptions) -> Result<String> {
    let entries: Vec<SuiteEntry> = suite(opts.quick, opts.page_sync)
        .into_iter()
        .filter(|e| opts.only.is_empty() || opts.only.iter().any(|o| o == e.id))
        .collect();
    if entries.is_empty() {
        return Err(BenchError::Invalid(format!(
            "--only {:?} matches no workload",
            opts.only
        )));
    }
    if opts.repeats == 0 {
        return Err(BenchError::Invalid("--repeats must be at least 1".into()));
    }
    if !opts.liftbridge.is_file() {
        return Err(BenchError::Invalid(format!(
            "no liftbridge binary at {} (build it: cargo build --release -p liftbridge-server)",
            opts.liftbridge.display()
        )));
    }
    std::fs::create_dir_all(&opts.out_dir)?;
    let env = Env {
        opts,
        pids: PidFile::new(opts.pid_file.clone()),
        work: opts.out_dir.join("work"),
    };
    let machine = Machine::probe(opts).await;
    let mut records = Vec::new();
    for repeat in 0..opts.repeats {
        for entry in &entries {
            for deployment in Deployment::ALL {
                eprintln!(
                    "[{}/{}] {} on {} …",
                    repeat + 1,
                    opts.repeats,
                    entry.title,
                    deployment.title()
                );
                let record = env.run_one(entry, deployment, repeat).await;
                match (&record.report, &record.error) {
                    (Some(r), _) => eprintln!(
                        "    {} msg/s{}{}",
                        thousands(r.msgs_per_sec),
                        r.latency_us
                            .map(|l| format!(", p50 {:.0} µs, p99 {:.0} µs", l.p50, l.p99))
                            .unwrap_or_default(),
                        if r.is_complete() {
                            ""
                        } else {
                            " (INCOMPLETE or errors)"
                        }
                    ),
                    (None, Some(e)) => eprintln!("    FAILED: {e}"),
                    (None, None) => {}
                }
                records.push(record);
            }
        }
    }
    let machine_after = Machine::loadavg();
    let _ = std::fs::remove_dir_all(&env.work);
    let md = markdown(opts, &machine, &machine_after, &entries, &records);
    std::fs::write(opts.out_dir.join("results.md"), &md)?;
    let json = serde_json::json!({
        "machine": machine,
        "load_after": machine_after,
        "suite": entries,
        "runs": records,
    });
    std::fs::write(
        opts.out_dir.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    Ok(md)
}

/// Facts about the run's machine and binaries.
#[derive(Debug, Clone, Serialize)]
struct Machine {
    date: String,
    label: Option<String>,
    cpus: usize,
    kernel: String,
    load_before: String,
    nats_server_version: String,
    liftbridge_bytes: u64,
    liftbridge_stripped_bytes: Option<u64>,
}

impl Machine {
    async fn probe(opts: &CompareOptions) -> Machine {
        let output = |program: &str, args: &[&str]| {
            let program = program.to_string();
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            async move {
                tokio::process::Command::new(program)
                    .args(args)
                    .output()
                    .await
                    .ok()
                    .map(|o| {
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        )
                        .trim()
                        .to_string()
                    })
                    .unwrap_or_else(|| "?".into())
            }
        };
        let nats = opts.nats_server.display().to_string();
        let stripped_path = opts.out_dir.join("liftbridge.stripped");
        let stripped = tokio::process::Command::new("strip")
            .arg("-o")
            .arg(&stripped_path)
            .arg(&opts.liftbridge)
            .status()
            .await
            .ok()
            .filter(|s| s.success())
            .and_then(|_| std::fs::metadata(&stripped_path).ok())
            .map(|m| m.len());
        let _ = std::fs::remove_file(&stripped_path);
        Machine {
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).await,
            label: opts.label.clone(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            load_before: Machine::loadavg(),
            nats_server_version: output(&nats, &["--version"]).await,
            liftbridge_bytes: std::fs::metadata(&opts.liftbridge)
                .map(|m| m.len())
                .unwrap_or(0),
            liftbridge_stripped_bytes: stripped,
        }
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The median of some numbers (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

fn markdown(
    opts: &CompareOptions,
    m: &Machine,
    load_after: &str,
    entries: &[SuiteEntry],
    records: &[RunRecord],
) -> String {
    let runs = |id: &str, d: Deployment| -> Vec<&RunRecord> {
        records
            .iter()
            .filter(|r| r.id == id && r.deployment == d)
            .collect()
    };
    let good = |id: &str, d: Deployment| -> Vec<&Report> {
        runs(id, d)
            .into_iter()
            .filter_map(|r| r.report.as_ref())
            .filter(|r| r.is_complete())
            .collect()
    };
    let med = |id: &str, d: Deployment, f: &dyn Fn(&Report) -> Option<f64>| -> Option<f64> {
        median(&mut good(id, d).into_iter().filter_map(f).collect::<Vec<_>>())
    };
    let rate = |r: &Report| Some(r.msgs_per_sec);
    let fmt_rate = |x: Option<f64>| x.map(thousands).unwrap_or_else(|| "failed".into());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    };

    let mut s = String::new();
    let _ = writeln!(s, "## liftbridge-bench compare: {}\n", m.date);
    if let Some(label) = &m.label {
        let _ = writeln!(s, "Measured: {label}  ");
    }
    let _ = writeln!(
        s,
        "Machine: {} CPUs, kernel {}, load average {} before / {} after. {}; `liftbridge` {} bytes ({} stripped).  \n\
         Each cell: median of {} run(s) (fresh servers and data dirs per run). Our page-cache workloads run with \
         `streams.sync.policy: {}`; JetStream uses its default file store (background sync every 2 min; this \
         nats-server has no per-message sync setting).\n",
        m.cpus,
        m.kernel,
        m.load_before,
        load_after,
        m.nats_server_version,
        thousands(m.liftbridge_bytes as f64),
        m.liftbridge_stripped_bytes
            .map(|b| thousands(b as f64))
            .unwrap_or_else(|| "?".into()),
        opts.repeats,
        match opts.page_sync {
            SyncPolicy::Never => "never",
            _ => "interval",
        },
    );

    let _ = writeln!(s, "### Throughput (msg/s; consume: msg/s read)\n");
    let _ = writeln!(
        s,
        "| workload | msgs | {} | {} | {} | standalone / JS | external / JS |",
        Deployment::Standalone.title(),
        Deployment::External.title(),
        Deployment::JetStream.title()
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for e in entries {
        let [a, b, c] = Deployment::ALL.map(|d| med(e.id, d, &rate));
        // At a fixed rate every system delivers the rate: the row is about latency, not throughput.
        let fixed = e.workload.rate > 0.0;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            e.title,
            thousands(e.workload.messages as f64),
            fmt_rate(a),
            fmt_rate(b),
            fmt_rate(c),
            if fixed {
                "(fixed rate)".into()
            } else {
                ratio(a, c)
            },
            if fixed {
                "(fixed rate)".into()
            } else {
                ratio(b, c)
            }
        );
    }

    let _ = writeln!(s, "\n### Publish-to-ack latency (µs, p50 / p99 / p99.9)\n");
    let _ = writeln!(
        s,
        "| workload | {} | {} | {} | p50 standalone / JS |",
        Deployment::Standalone.title(),
        Deployment::External.title(),
        Deployment::JetStream.title()
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for e in entries.iter().filter(|e| e.phase == Phase::Produce) {
        let cell = |d: Deployment| {
            let p = |f: fn(&crate::latency::LatencySummary) -> f64| {
                med(e.id, d, &|r: &Report| r.latency_us.as_ref().map(f))
            };
            match (p(|l| l.p50), p(|l| l.p99), p(|l| l.p999)) {
                (Some(a), Some(b), Some(c)) => format!("{a:.0} / {b:.0} / {c:.0}"),
                _ => "–".into(),
            }
        };
        let p50 = |d| med(e.id, d, &|r: &Report| r.latency_us.map(|l| l.p50));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            e.title,
            cell(Deployment::Standalone),
            cell(Deployment::External),
            cell(Deployment::JetStream),
            ratio(p50(Deployment::Standalone), p50(Deployment::JetStream))
        );
    }

    let _ = writeln!(
        s,
        "\n### CPU per message (µs of user+system time during the measured phase): server processes, and (client)\n"
    );
    let _ = writeln!(
        s,
        "| workload | {} | {} (both processes) | {} | standalone / JS |",
        Deployment::Standalone.title(),
        Deployment::External.title(),
        Deployment::JetStream.title()
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for e in entries {
        let per_msg = |d: Deployment, cpu: fn(&RunRecord) -> Option<f64>| {
            median(
                &mut runs(e.id, d)
                    .into_iter()
                    .filter_map(|r| {
                        let rep = r.report.as_ref().filter(|rep| rep.is_complete())?;
                        Some(cpu(r)? * 1e6 / rep.messages.max(1) as f64)
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let server = Deployment::ALL.map(|d| per_msg(d, |r| r.server_cpu_secs));
        let client = Deployment::ALL.map(|d| per_msg(d, |r| r.client_cpu_secs));
        let f = |i: usize| match (server[i], client[i]) {
            (Some(sv), Some(cl)) => format!("{sv:.1} ({cl:.1})"),
            (Some(sv), None) => format!("{sv:.1}"),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            e.title,
            f(0),
            f(1),
            f(2),
            ratio(server[0], server[2])
        );
    }

    let _ = writeln!(
        s,
        "\n### Server memory (MiB): idle (stream created, before load) / peak (VmHWM after the run)\n"
    );
    let _ = writeln!(
        s,
        "| workload | liftbridge standalone | liftbridge (external) | its nats-server, peak | JetStream nats-server |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for e in entries {
        let mem = |d: Deployment, f: &dyn Fn(&RunRecord) -> Option<u64>| {
            median(
                &mut runs(e.id, d)
                    .into_iter()
                    .filter_map(f)
                    .map(|k| k as f64)
                    .collect::<Vec<_>>(),
            )
        };
        let cell = |d: Deployment| match (
            mem(d, &|r: &RunRecord| r.idle.map(|m| m.rss_kib)),
            mem(d, &|r: &RunRecord| r.loaded.map(|m| m.hwm_kib)),
        ) {
            (Some(i), Some(p)) => format!("{} / {}", mib(i), mib(p)),
            _ => "–".into(),
        };
        let broker = mem(Deployment::External, &|r: &RunRecord| {
            r.broker_loaded.map(|m| m.hwm_kib)
        })
        .map(mib)
        .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            e.title,
            cell(Deployment::Standalone),
            cell(Deployment::External),
            broker,
            cell(Deployment::JetStream)
        );
    }

    let _ = writeln!(s, "\n### Every run (msg/s)\n");
    let _ = writeln!(s, "| workload | deployment | runs |");
    let _ = writeln!(s, "|---|---|---|");
    for e in entries {
        for d in Deployment::ALL {
            let cells: Vec<String> = runs(e.id, d)
                .into_iter()
                .map(|r| match (&r.report, &r.error) {
                    (Some(rep), _) if rep.is_complete() => thousands(rep.msgs_per_sec),
                    (Some(rep), _) => format!(
                        "incomplete ({} of {}, {} errors{})",
                        rep.messages,
                        rep.workload.messages,
                        rep.errors,
                        rep.first_error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                    (None, Some(err)) => format!("failed: {}", err.lines().next().unwrap_or("")),
                    (None, None) => "?".into(),
                })
                .collect();
            let _ = writeln!(s, "| {} | {} | {} |", e.id, d.title(), cells.join(", "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn suite_workloads_are_valid() {
        for e in suite(false, SyncPolicy::Interval)
            .into_iter()
            .chain(suite(true, SyncPolicy::Never))
        {
            e.workload
                .validate()
                .unwrap_or_else(|err| panic!("{}: {err}", e.id));
        }
    }
}
