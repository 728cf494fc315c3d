//! Lrmd: the local resource manager of one node.

mod agent;
mod app_socket;
mod discovery;
mod reservation;
mod supervisor;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(
    name = "lrmd",
    version,
    about = "Local resource manager: runs a node's session processes in enforced reservations",
    long_about = "lrmd registers this node with Sesco, reports its hardware and load, and \
starts, resizes and stops session processes inside reservations enforced by the kernel \
(cgroups and SCHED_DEADLINE). It must run as root; session processes never do."
)]
struct Cli {
    /// Sesco's address.
    #[arg(long, env = "SESCO_ADDR", default_value = "127.0.0.1:7207")]
    sesco: String,
    /// This node's name (default: the host name).
    #[arg(long, env = "LRMD_NODE")]
    node: Option<String>,
    /// File holding the cluster key (Sesco writes it to its data directory).
    #[arg(
        long,
        env = "LRMD_CLUSTER_KEY_FILE",
        default_value = "/var/lib/sesco/cluster.key"
    )]
    cluster_key_file: PathBuf,
    /// Where process records, scratch directories and logs live.
    #[arg(long, env = "LRMD_STATE_DIR", default_value = "/var/lib/lrmd")]
    state_dir: PathBuf,
    /// Where the resource kernel keeps reservation records (shared by every user of rk on
    /// this host).
    #[arg(long, env = "LRMD_RK_STATE_DIR", default_value = "/run/rk")]
    rk_state_dir: PathBuf,
    /// Cgroup base of this node's reservations (default: sesco/NODE).
    #[arg(long, env = "LRMD_CGROUP_BASE")]
    cgroup_base: Option<String>,
    /// Speak TLS to Sesco, trusting this certificate authority (PEM; see `sesco tls init`).
    /// Session processes are told to trust it too, so it must be readable by them.
    #[arg(long, env = "SESCO_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Directories searched first for session programs (colon-separated). They and the
    /// programs in them must be readable by the session users.
    #[arg(
        long,
        env = "LRMD_APP_PATH",
        value_delimiter = ':',
        default_value = "/usr/local/libexec/sesco"
    )]
    app_path: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let node = match cli.node {
        Some(node) => node,
        None => nix::sys::utsname::uname()
            .context("cannot read the host name; pass --node")?
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    sesco_proto::world::check_name(&node).map_err(|why| anyhow::anyhow!("node name {why}"))?;
    let cluster_key = std::fs::read_to_string(&cli.cluster_key_file)
        .with_context(|| {
            format!(
                "cannot read the cluster key {}",
                cli.cluster_key_file.display()
            )
        })?
        .trim()
        .to_string();
    anyhow::ensure!(
        !cluster_key.is_empty(),
        "{} is empty",
        cli.cluster_key_file.display()
    );

    let tls_ca_path = match &cli.tls_ca {
        Some(ca) => Some(
            std::fs::canonicalize(ca).with_context(|| format!("cannot find {}", ca.display()))?,
        ),
        None => None,
    };
    let tls = match &tls_ca_path {
        Some(ca) => Some(
            sesco_proto::transport::ClientTls::from_ca_file(ca)
                .context("cannot load the TLS authority")?,
        ),
        None => None,
    };
    let base = cli.cgroup_base.unwrap_or_else(|| format!("sesco/{node}"));
    let kernel = rk::ResourceKernel::with_config(rk::KernelConfig {
        state_dir: cli.rk_state_dir,
        ..rk::KernelConfig::new(base.clone())
    })
    .context("cannot open the resource kernel")?;
    let host = kernel.host();
    host.require_cgroups(host.reservation_controllers())
        .context("this host cannot enforce reservations")?;
    host.require_set_ids()
        .context("lrmd must be able to start processes as session users")?;
    let hardware = discovery::discover(&kernel, &discovery::Roots::default())
        .context("cannot discover this node's hardware")?;
    let rediscover: agent::Rediscover = {
        let kernel = kernel.clone();
        std::sync::Arc::new(move || {
            discovery::discover(&kernel, &discovery::Roots::default())
                .map_err(|e| tracing::warn!(error = %e, "cannot read the hardware again"))
                .ok()
        })
    };
    tracing::info!(
        node,
        cpus = hardware.cpus,
        nics = hardware.nics.len(),
        disks = hardware.block_devices.len(),
        memory_mib = hardware.memory_bytes >> 20,
        cgroups = %hardware.cgroup_mode,
        base,
        "lrmd starting"
    );

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (exit_tx, exit_rx) = mpsc::unbounded_channel();
        let supervisor = supervisor::Supervisor::new(
            kernel,
            supervisor::SupervisorConfig {
                state_dir: cli.state_dir.clone(),
                scratch_dir: cli.state_dir.join("scratch"),
                log_dir: cli.state_dir.join("logs"),
                app_path: cli.app_path,
                sesco_addr: cli.sesco.clone(),
                tls_ca: tls_ca_path.clone(),
            },
            exit_tx,
        )
        .with_context(|| format!("cannot prepare {}", cli.state_dir.display()))?;
        supervisor
            .reattach()
            .context("cannot re-attach to the processes of a previous run")?;
        let config = agent::AgentConfig {
            sesco: cli.sesco,
            node,
            cluster_key,
            tls,
        };
        tokio::select! {
            _ = agent::run(
                config,
                agent::HardwareReport { current: hardware, rediscover },
                supervisor,
                exit_rx,
            ) => Ok(()),
            _ = shutdown_signal() => {
                tracing::info!("shutting down; session processes keep running and are re-attached on restart");
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handlers can be installed");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
