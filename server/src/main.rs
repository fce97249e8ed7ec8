//! `ipcs-server`: parses the command line and wires the parts of the
//! `ipcs_server` library together.

#![forbid(unsafe_code)]

use anyhow::{anyhow, Context};
use clap::Parser;
use ipcs_common::sys::Interface;
use ipcs_server::{Announcement, Config, Identity, Reactor, ReactorOptions, Registration};
use tracing::info;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    ipcs_common::logging::init();

    let iface = Interface::lookup(&config.iface)
        .with_context(|| format!("backend interface {:?}", config.iface))?;
    let identity = Identity::resolve(&iface, config.id)?;
    let reactor = Reactor::bind(
        &iface,
        identity,
        config.udp,
        ReactorOptions {
            batch: usize::from(config.batch),
            stats_interval: config.stats_interval(),
        },
    )?;
    let udp = reactor.udp_local_addr();
    info!(
        "server {} on {} mac={} ip={} serving backend frames",
        identity.id,
        iface.name,
        identity.mac,
        identity
            .ipv4
            .map_or_else(|| "none".to_owned(), |ip| ip.to_string()),
    );
    if let Some(addr) = udp {
        info!("serving HSMAP over UDP on {addr}");
    }

    let target = config.registry_target();
    let registration = match (&target, identity.ipv4) {
        (ipcs_server::RegistryTarget::Disabled, _) => {
            info!("no registry: running standalone");
            None
        }
        (_, None) => {
            return Err(anyhow!(
                "interface {} has no IPv4 address to announce to the registry {target}; \
                 give it one or run with --registry none",
                iface.name
            ))
        }
        (_, Some(ip)) => {
            let announcement = Announcement {
                id: identity.id,
                mac: identity.mac,
                ip,
                udp: udp.map(|a| a.port()),
            };
            info!("announcing to registry {target}");
            Registration::start(&target, announcement, config.beat_interval())
        }
    };

    let stats = reactor.run()?;
    // Close the registry connection before the last log line, so the
    // registry has already dropped us when the process is seen to exit.
    if let Some(registration) = registration {
        registration.stop();
    }
    info!("final stats {stats}");
    Ok(())
}
