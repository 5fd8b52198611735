//! `liftbridge-bench`: producer and consumer benchmarks against Liftbridge or JetStream, and `compare`, the
//! side-by-side suite. See the crate documentation (`bench/src/lib.rs`) and `docs/performance.md`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use liftbridge_bench::compare::{self, CompareOptions};
use liftbridge_bench::target::Target;
use liftbridge_bench::workload::Workload;
use liftbridge_bench::{consumer, producer};

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
