//! `liftbridge-bench`: producer and consumer benchmarks against Liftbridge or JetStream, and `compare`, the
//! side-by-side suite. See the crate documentation (`bench/src/lib.rs`) and `docs/performance.md`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use liftbridge_bench::compare::{self, CompareOptions};
use liftbridge_bench::target::Target;
use liftbridge_bench::workload::Workload;
use liftbridge_bench::{consumer, floor, producer};

/// Benchmarks Liftbridge (through the Rust client) and NATS JetStream with the same workloads.
#[derive(Debug, Parser)]
#[command(name = "liftbridge-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publishes messages and reports throughput and publish-to-ack latency.
    Producer(RunArgs),
    /// Reads a stream from the start and reports throughput; checks every message came back in order.
    Consumer(RunArgs),
    /// Starts fresh servers and runs the comparison suite (standalone, external nats-server, JetStream).
    Compare(CompareOptions),
    /// Serves the gRPC floor: Liftbridge's API acknowledging every publish at once, storing nothing. Prints
    /// `listening on HOST:PORT`, then serves until SIGINT or SIGTERM.
    FloorServer {
        /// Address to bind (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Publishes to a floor server with the bare generated tonic client (no Liftbridge client).
    FloorClient(FloorClientArgs),
}

#[derive(Debug, clap::Args)]
struct FloorClientArgs {
    /// The floor server, `host:port`.
    #[arg(long)]
    addr: String,
    /// Messages to publish.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// At most this many unacknowledged messages (1 = synchronous).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `floor-client` and prints msg/s and latency.
async fn floor_client(args: FloorClientArgs) -> anyhow::Result<()> {
    let result = floor::run_raw(&args.addr, args.messages, args.size, args.window).await?;
    let secs = result.elapsed.as_secs_f64();
    let rate = result.messages as f64 / secs;
    let latency = result.latency.summary();
    if args.json {
        let out = serde_json::json!({
            "messages": result.messages,
            "elapsed_secs": secs,
            "msgs_per_sec": rate,
            "latency_us": latency,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let p50 = latency.map_or(0.0, |l| l.p50);
        let p99 = latency.map_or(0.0, |l| l.p99);
        println!(
            "{} messages in {secs:.3} s: {rate:.0} msg/s, p50 {p50:.1} us, p99 {p99:.1} us",
            result.messages
        );
    }
    Ok(())
}

/// Runs `floor-server` until interrupted.
async fn floor_server(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let (addr, served) = floor::serve(listen, liftbridge_bench::server::interrupted()).await?;
    println!("listening on {addr}");
    served.await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum System {
    Liftbridge,
    Jetstream,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The system under test.
    #[arg(long, value_enum, default_value_t = System::Liftbridge)]
    system: System,
    /// Liftbridge server address(es), `host:port`, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:9292")]
    addr: Vec<String>,
    /// NATS URL (`--system jetstream`).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// Producer: delete the stream first and create it afresh.
    #[arg(long)]
    fresh: bool,
    /// Producer: do not create the stream (it must exist).
    #[arg(long, conflicts_with = "fresh")]
    no_create: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    workload: Workload,
}

impl RunArgs {
    fn target(&self) -> Target {
        match self.system {
            System::Liftbridge => Target::Liftbridge {
                addrs: self.addr.clone(),
            },
            System::Jetstream => Target::JetStream {
                url: self.url.clone(),
            },
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (args, report) = match cli.command {
        Command::Compare(opts) => {
            if opts.list {
                for e in compare::suite(opts.quick, opts.page_sync) {
                    println!("{:8} {}", e.id, e.title);
                }
                return Ok(());
            }
            let md = tokio::select! {
                md = compare::run(&opts) => Some(md.context("compare")?),
                // Leaving the select drops the suite, which kills the servers it started.
                _ = liftbridge_bench::server::interrupted() => None,
            };
            let Some(md) = md else {
                eprintln!("interrupted: the servers started were stopped");
                std::process::exit(130);
            };
            println!("{md}");
            return Ok(());
        }
        Command::Producer(args) => {
            let target = args.target();
            if args.fresh {
                target.prepare_stream(&args.workload, true).await?;
            }
            let report =
                producer::run(&target, &args.workload, !args.no_create, !args.quiet).await?;
            (args, report)
        }
        Command::FloorServer { listen } => return floor_server(listen).await,
        Command::FloorClient(args) => return floor_client(args).await,
        Command::Consumer(args) => {
            let report = consumer::run(&args.target(), &args.workload, !args.quiet).await?;
            (args, report)
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if !report.is_complete() {
        anyhow::bail!(
            "run incomplete: {} of {} messages, {} errors, in order: {:?}",
            report.messages,
            report.workload.messages,
            report.errors,
            report.in_order
        );
    }
    Ok(())
}
