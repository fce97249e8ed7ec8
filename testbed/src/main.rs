//! `ipcs-netns`: stands the IPCS topology up on this host without Docker,
//! with the bridge `ipcs0` in the host's namespace, for `bootstrap.sh --netns`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ipcs_testbed::persisted::{self, Persisted};
use ipcs_testbed::vrrp;

#[derive(Parser)]
#[command(
    version,
    about = "Stand the IPCS registry and servers up in network namespaces on bridge ipcs0"
)]
struct Cli {
    /// Directory for the state file and process logs.
    #[arg(long, global = true, default_value = "/run/ipcs/netns")]
    run_dir: PathBuf,
    /// Prefix of every namespace and link made (namespaces `<prefix>-reg`, `<prefix>-s11`, ...).
    #[arg(long, global = true, default_value = "ipcs")]
    prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create bridge ipcs0 (172.16.238.1/24) in this namespace, the registry
    /// (172.16.238.100) and N servers (172.16.238.11..) in namespaces, and start them.
    Up {
        /// How many servers to start.
        #[arg(long, default_value_t = 3)]
        servers: usize,
        /// How many LB nodes of the LB tier to make: namespaces `<prefix>-lb1`,
        /// ... with eth0 on the bridge at 172.16.238.201, ... (the VIP is
        /// 172.16.238.200). Nothing is started in them: bootstrap.sh runs an
        /// LB node (`ipcs-lb-node`: ipcs-lb and keepalived) in each. 0: no tier.
        #[arg(long, default_value_t = 0)]
        lbs: usize,
        /// Directory holding ipcs-registry and ipcs-server (default: beside this binary).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The deployment key's file (64 hex digits), given to the registry
        /// and the servers; made (mode 0600) if missing. Default:
        /// `<run-dir>/key`.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Add or remove servers until N run, leaving the registry, the bridge
    /// and the other servers alone (new servers take the lowest free ids from 11).
    Scale {
        /// How many servers should run.
        servers: usize,
        /// Directory holding ipcs-server (default: beside this binary).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Stop the processes and remove the namespaces, links and bridge that `up` made.
    Down,
    /// Show what `up` made and whether its processes still run.
    Status {
        /// Print one JSON object for scripts instead of text: `up` (false
        /// and nothing else when no topology is up), `bridge`,
        /// `bridge_made`, `netns`, `processes` (each `label`, `role`
        /// "registry" or "server", `id` (servers; else null), `pid`,
        /// `running`), `registry_running`, `servers_running`, `log_dir`,
        /// `lb_nodes` (each `node`, `netns`, `ip`), `vip`, `vip_holder` (the
        /// node holding the VIP now, or null).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let state = Persisted::path(&cli.run_dir);
    match cli.command {
        Cmd::Up {
            servers,
            lbs,
            bin_dir,
            key_file,
        } => {
            if state.exists() {
                bail!(
                    "a topology is already up (state in {}); run `ipcs-netns down` first",
                    state.display()
                );
            }
            if let Some(dir) = bin_dir {
                std::env::set_var("IPCS_BIN_DIR", dir);
            }
            if lbs > vrrp::MAX_LB_NODES {
                bail!("--lbs {lbs}: at most {} LB nodes", vrrp::MAX_LB_NODES);
            }
            let key_file = key_file.unwrap_or_else(|| cli.run_dir.join("key"));
            let up = persisted::up(&cli.prefix, servers, lbs, &cli.run_dir, &key_file)
                .context("bringing the topology up")?;
            up.save(&state)?;
            up.wait_started(std::time::Duration::from_secs(3));
            println!("{}", up.describe());
        }
        Cmd::Scale { servers, bin_dir } => {
            let Some(mut up) = Persisted::load(&state)? else {
                bail!(
                    "no topology is up ({} does not exist); run `ipcs-netns up` first",
                    state.display()
                );
            };
            if let Some(dir) = bin_dir {
                std::env::set_var("IPCS_BIN_DIR", dir);
            }
            let scaled = up.scale(&cli.prefix, servers);
            // Save whatever was done, also when a step failed.
            up.save(&state)?;
            scaled.context("scaling the topology")?;
            up.wait_started(std::time::Duration::from_secs(3));
            println!("{}", up.describe());
        }
        Cmd::Down => match Persisted::load(&state)? {
            Some(up) => {
                up.tear_down();
                std::fs::remove_file(&state).ok();
                println!("removed the netns topology");
            }
            None => println!("nothing to remove ({} does not exist)", state.display()),
        },
        Cmd::Status { json } => match (Persisted::load(&state)?, json) {
            (Some(up), false) => println!("{}", up.describe()),
            (Some(up), true) => println!("{}", up.to_json(&cli.prefix)),
            (None, false) => println!("no netns topology is up"),
            (None, true) => println!("{}", serde_json::json!({ "up": false })),
        },
    }
    Ok(())
}
