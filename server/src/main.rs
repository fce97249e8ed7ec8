//! `ipcs-server`: parses the command line and wires the parts of the
//! `ipcs_server` library together.

#![forbid(unsafe_code)]

use anyhow::{anyhow, Context};
use ipcs_common::sys::privs::drop_privileges;
use ipcs_common::sys::Interface;
use ipcs_server::{
    Announcement, Config, FaultOptions, Identity, Reactor, ReactorOptions, Registration,
    RegistryTarget,
};
use tracing::{info, warn};

fn main() -> anyhow::Result<()> {
    let config: Config = ipcs_common::cli::parse("IPCS_SERVER");
    ipcs_common::logging::init();
    // Read first, while the process may still read a root-only file.
    let key = config
        .key_file
        .as_deref()
        .map(ipcs_common::registry_auth::Key::load)
        .transpose()?;

    let iface = Interface::lookup(&config.iface)
        .with_context(|| format!("backend interface {:?}", config.iface))?;
    let identity = Identity::resolve(&iface, config.id)?;
    let target = config.registry_target();
    // Checked before binding anything: a server that cannot announce
    // itself must not look ready.
    let announce_ip = match (&target, identity.ipv4) {
        (RegistryTarget::Disabled, _) => None,
        (_, Some(ip)) => Some(ip),
        (_, None) => {
            return Err(anyhow!(
                "interface {} has no IPv4 address to announce to the registry {target}; \
                 give it one or run with --registry off",
                iface.name
            ))
        }
    };
    // Bound before the sockets that serve, so a busy admin port stops the
    // start with a clear error.
    let admin = match config.admin.0 {
        None => None,
        Some(addr) => Some(
            ipcs_common::admin_http::bind(addr)
                .with_context(|| format!("cannot serve admin requests on {addr}"))?,
        ),
    };
    let reactor = Reactor::bind(
        &iface,
        identity,
        config.udp,
        ReactorOptions {
            batch: usize::from(config.batch),
            stats_interval: config.stats_interval(),
            fault: FaultOptions {
                delay: config.fault_delay,
                delay_file: config.fault_delay_file.clone(),
                queue: config.fault_queue as usize,
            },
        },
    )?;
    // Every socket is open: nothing below needs privilege, and every
    // thread (admin, heartbeat) is made after this and inherits the drop.
    if let Some(user) = config.user.0 {
        let dropped =
            drop_privileges(user).with_context(|| format!("cannot drop privileges to {user}"))?;
        info!(
            "privileges dropped: running as {user} (switched: {}) with no capabilities",
            dropped.switched_user
        );
    }
    if let Some(listener) = admin {
        info!(
            "admin endpoint on http://{}/metrics",
            listener.local_addr()?
        );
        ipcs_common::admin_http::spawn_loop_endpoint(
            listener,
            "ipcs-server-admin",
            reactor.admin_state(),
            ipcs_server::stats::render,
        )?;
    }
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
    if !config.fault_delay.is_zero() {
        warn!(
            "FAULT INJECTION (tests only): every answer is held {} us",
            config.fault_delay.as_micros()
        );
    }
    if let Some(path) = &config.fault_delay_file {
        info!(
            "fault injection (tests only): SIGUSR1 reads the answer delay from {}",
            path.display()
        );
    }
    let registration = match announce_ip {
        None => {
            info!("no registry: running standalone");
            None
        }
        Some(ip) => {
            info!("announcing to registry {target}");
            if key.is_none() {
                warn!(
                    "no --key-file: registering without proof; a registry with a key refuses that"
                );
            }
            let announcement = Announcement {
                id: identity.id,
                mac: identity.mac,
                ip,
                udp: udp.map(|a| a.port()),
            };
            Registration::start(&target, announcement, config.beat_interval(), key)
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
