//! `ipcs-lb-node`: runs one node of the LB tier (docs/DEPLOY.md, "The LB
//! tier"): keepalived and ipcs-lb in this network namespace, restarting
//! either when it dies, with the node down (no VIP) until its LB answers.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ipcs_lb_node::run::{self, NodeConfig};
use ipcs_lb_node::vrrp;

#[derive(Parser)]
#[command(
    version,
    about = "Run one node of the IPCS LB tier: ipcs-lb and keepalived (VRRP) sharing the virtual address",
    long_about = "Run one node of the IPCS LB tier in this network namespace (a netns, or a \
                  container on the backend network): keepalived holds the virtual address \
                  172.16.238.200 on eth0 while this node's ipcs-lb answers, and the node's \
                  address is 172.16.238.(200 + node). A dead ipcs-lb marks the node down at \
                  once (keepalived hands the address over) and is restarted with back-off; the \
                  node rejoins as a standby once it answers 1+1 again. SIGTERM/SIGINT stop both \
                  children (SIGKILL after 6 s) and exit."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(clap::Args)]
struct NodeArgs {
    /// The node (1..=54): its address is 172.16.238.(200 + N).
    #[arg(long)]
    node: Option<usize>,
    /// How many nodes the tier has (2..=54): keepalived sends its adverts
    /// to each of the others by unicast (172.16.238.201 ..).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// The node's directory: keepalived.conf, the down file keepalived
    /// tracks, pid files (lb.pid, keepalived*.pid), master.log (the time of
    /// each takeover).
    #[arg(long, default_value = "/run/ipcs-lb-node")]
    dir: PathBuf,
    /// Write ipcs-lb's and keepalived's output to lb.log and keepalived.log
    /// in this directory; without it they go to this process's
    /// stdout/stderr (a container's log).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The registry the LB follows, HOST:PORT.
    #[arg(long, default_value = "registry.batata:7070")]
    registry: String,
    /// The deployment key's file, given to ipcs-lb.
    #[arg(long, default_value = "/run/secrets/ipcs_key")]
    key_file: PathBuf,
    /// Directory holding ipcs-lb and calc (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The keepalived binary.
    #[arg(long, default_value = vrrp::KEEPALIVED)]
    keepalived: PathBuf,
    /// Extra arguments for ipcs-lb, after `--`.
    #[arg(last = true)]
    lb_args: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Append the time (seconds since the epoch) to FILE: keepalived's
    /// notify_master hook, which records each takeover.
    RecordMaster { file: PathBuf },
}

fn main() -> Result<()> {
    // The project's one flag grammar: every flag also as IPCS_LB_NODE_<FLAG>.
    let cli: Cli = ipcs_common::cli::parse("IPCS_LB_NODE");
    if let Some(Cmd::RecordMaster { file }) = cli.command {
        return run::record_master(&file)
            .with_context(|| format!("appending to {}", file.display()));
    }
    ipcs_common::logging::init();
    let args = cli.node;
    let node = args
        .node
        .context("--node is required (or IPCS_LB_NODE_NODE)")?;
    let me = std::env::current_exe().context("finding this binary")?;
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => me.parent().context("this binary's directory")?.to_owned(),
    };
    let config = NodeConfig {
        node,
        nodes: args.nodes,
        dir: args.dir,
        log_dir: args.log_dir,
        lb: bin_dir.join("ipcs-lb"),
        calc: bin_dir.join("calc"),
        keepalived: args.keepalived,
        recorder: me,
        registry: args.registry,
        key_file: args.key_file,
        lb_args: args.lb_args,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    run::run(&config, &stop)?;
    Ok(())
}
