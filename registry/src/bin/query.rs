//! `ipcs-registry-query`: asks a registry for its list or counters with a
//! proof made with the deployment key, and prints the answer in the
//! registry's own line format (`SERVERS ...`, one entry per line, `END`;
//! or `STAT <name> <value>` lines), for scripts (`bootstrap.sh status`,
//! deploy/e2e.sh) and operators. Exit status 0 with an answer, 1 without.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ipcs_common::duration::parse_duration;
use ipcs_common::registry_auth::Key;
use ipcs_common::registry_client::{connect, fetch_list_as, fetch_stats_as};
use ipcs_common::registry_proto::RegistryLine;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Question {
    /// The live servers (LIST).
    List,
    /// The registry's counters (STATS).
    Stats,
}

/// Asks an IPCS registry for its server list or counters, with a proof made
/// with the deployment key, and prints the answer as the registry sent it.
#[derive(Debug, Parser)]
#[command(name = "ipcs-registry-query", version = ipcs_common::version!())]
struct Args {
    /// What to ask.
    #[arg(value_enum, default_value = "list")]
    question: Question,

    /// Registry address (host:port).
    #[arg(long, value_name = "HOST:PORT", default_value = "registry.batata:7070")]
    registry: String,

    /// File holding the deployment key (64 hex digits). Without it the
    /// question carries no proof, which only a registry run with
    /// --insecure-no-auth answers.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,

    /// Give up after this long (connecting included).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let args: Args = ipcs_common::cli::parse("IPCS_REGISTRY_QUERY");
    let key = args.key_file.as_deref().map(Key::load).transpose()?;
    let mut stream = connect(&args.registry, args.timeout)
        .with_context(|| format!("connecting to {}", args.registry))?;
    let mut lines = Vec::new();
    match args.question {
        Question::List => {
            let list = fetch_list_as(&mut stream, key.as_ref(), args.timeout)?;
            lines.push(RegistryLine::Servers {
                version: list.version,
                count: list.servers.len(),
            });
            lines.extend(list.servers.into_iter().map(RegistryLine::Entry));
        }
        Question::Stats => {
            let stats = fetch_stats_as(&mut stream, key.as_ref(), args.timeout)?;
            lines.extend(
                stats
                    .into_iter()
                    .map(|(name, value)| RegistryLine::Stat { name, value }),
            );
        }
    }
    lines.push(RegistryLine::End);
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
