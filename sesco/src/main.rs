//! The Sesco server binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use sesco::{auth, config, coordinator, qram_cmd, server, tls_init};
use sesco_proto::transport::ServerTls;

#[derive(Parser)]
#[command(
    name = "sesco",
    version,
    about = "Sesco: the global QoS session coordinator",
    long_about = "Sesco keeps the world (users, groups, applications, nodes) and the global \
resource list, admits sessions by the utility they bring using Q-RAM, and has each node's \
Lrmd enforce the chosen reservations."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Hash a password (read from stdin) for a world file's `password_hash`.
    HashPassword,
    /// TLS between all parts.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Q-RAM tools over the stable instance format.
    Qram {
        #[command(subcommand)]
        command: QramCommand,
    },
}

/// Parses durations such as `500ms`, `5s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}' (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on for Lrmds, clients and applications.
    #[arg(long, default_value = "127.0.0.1:7207", env = "SESCO_LISTEN")]
    listen: SocketAddr,
    /// Directory for the database, the cluster key and the first admin's password.
    #[arg(long, default_value = "/var/lib/sesco", env = "SESCO_DATA_DIR")]
    data_dir: PathBuf,
    /// Address applications are told to reach Sesco at (default: the listen address).
    #[arg(long, env = "SESCO_ADVERTISE")]
    advertise: Option<String>,
    /// A node silent for this long is declared lost.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_timeout: Duration,
    /// How often Lrmds heartbeat.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat: Duration,
    /// How long an application has to acknowledge a lower set-point.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    ack_timeout: Duration,
    /// How long an Lrmd has to answer a request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    node_request_timeout: Duration,
    /// Lifetime of sign-in tokens.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    token_ttl: Duration,
    /// Connections served at once; more are refused with an error.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Live sessions one user may hold at once.
    #[arg(long, default_value_t = 4096)]
    max_sessions_per_user: usize,
    /// Serve TLS with this certificate (PEM; see `sesco tls init`).
    #[arg(long, env = "SESCO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SESCO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Make a certificate authority and Sesco's certificate and key, signed by it, for the
    /// names clients use. Give `sesco serve --tls-cert DIR/sesco.pem --tls-key
    /// DIR/sesco.key`, and every Lrmd, arq and GUI `--tls-ca DIR/ca.pem`.
    Init {
        /// Where to write ca.pem, ca.key, sesco.pem and sesco.key.
        #[arg(long, default_value = "/var/lib/sesco/tls")]
        dir: PathBuf,
        /// A DNS name or IP address clients reach Sesco by (repeat for more).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum QramCommand {
    /// Solve one instance file and print {"choice", "utility", "solve_us"} as JSON.
    #[command(after_long_help = qram_cmd::FORMAT_HELP)]
    Solve {
        /// Instance file (JSON, see docs/qram.md).
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Qram {
            command: QramCommand::Solve { file },
        } => qram_cmd::solve(&file),
        Command::Serve(args) => serve(args),
        Command::Tls {
            command: TlsCommand::Init { dir, names, force },
        } => {
            for path in tls_init::init(&dir, &names, force)? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from stdin")?;
            let password = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            println!("{}", auth::hash_password(password));
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = config::ServeConfig {
        listen: args.listen,
        advertise: args.advertise.unwrap_or_else(|| args.listen.to_string()),
        data_dir: args.data_dir,
        node_timeout: args.node_timeout,
        heartbeat: args.heartbeat,
        ack_timeout: args.ack_timeout,
        node_request_timeout: args.node_request_timeout,
        token_ttl: args.token_ttl,
        max_connections: args.max_connections.max(1),
        max_sessions_per_user: args.max_sessions_per_user,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(ServerTls::from_files(cert, key).context("cannot load the TLS certificate")?)
        }
        _ => None,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let coordinator = coordinator::Coordinator::open(config.clone())?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), tls = tls.is_some(), "sesco serving");
        let result = tokio::select! {
            result = server::serve(coordinator.clone(), listener, tls) => result.context("the listener failed"),
            _ = shutdown_signal() => {
                tracing::info!("shutting down; sessions keep running and are reconciled on restart");
                Ok(())
            }
        };
        drop(coordinator.store_with_events());
        result
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

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_reject_nonsense() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
