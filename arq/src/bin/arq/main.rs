//! `arq`: request, watch and end Sesco sessions; manage the world.

mod render;
mod signin;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use arq::client::{Client, ClientError};
use arq::proto::message::SessionFilter;
use arq::proto::session::{AdmissionOutcome, SessionId, SessionRequest};
use clap::{Parser, Subcommand, ValueEnum};

use crate::render::Output;

#[derive(Parser)]
#[command(
    name = "arq",
    version,
    about = "Admission requests to Sesco: request, watch and end sessions; manage the world",
    long_about = "arq talks to a Sesco server. Sign in with --user and a password (from \
--password-file, SESCO_PASSWORD_FILE or SESCO_PASSWORD), with --token, or with the token \
`arq login` saved. Every command takes --output json for scripts.",
    after_help = "Exit status: 0 on success, 1 on error, 3 when a session request is rejected."
)]
struct Cli {
    /// Sesco's address.
    #[arg(
        long,
        global = true,
        env = "SESCO_ADDR",
        default_value = "127.0.0.1:7207"
    )]
    server: String,
    /// User to sign in as.
    #[arg(long, global = true, env = "SESCO_USER")]
    user: Option<String>,
    /// File holding the password (first line).
    #[arg(long, global = true, env = "SESCO_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// Speak TLS to Sesco, trusting this certificate authority (PEM; `sesco tls init`).
    #[arg(long, global = true, env = "SESCO_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// A token from an earlier sign-in.
    #[arg(long, global = true, env = "SESCO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How to print results.
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in and save a token for the next commands.
    Login,
    /// Ask for a session of an application.
    Request {
        /// The application.
        application: String,
        /// A variant of it (default: any variant Sesco chooses).
        #[arg(long)]
        variant: Option<String>,
        /// Lowest acceptable level per QoS dimension, as DIM=LEVEL (repeat, or
        /// comma-separate).
        #[arg(long = "min", value_delimiter = ',')]
        minimum: Vec<String>,
        /// Only show what Sesco would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// A key that makes a retried request harmless.
        #[arg(long)]
        key: Option<String>,
    },
    /// List sessions (yours; all of them for admins).
    Ls {
        /// Include ended sessions.
        #[arg(long)]
        all: bool,
    },
    /// Show one session: state, node, pids, set-point, utility, reservation.
    Show { id: u64 },
    /// End a session: kill its processes and clean up after them.
    Terminate { id: u64 },
    /// Print events as they happen.
    Watch {
        /// Also print recorded events after this sequence number.
        #[arg(long)]
        since: Option<u64>,
        /// Only events of this session.
        #[arg(long)]
        session: Option<u64>,
        /// Stop once that session has ended (needs --session).
        #[arg(long, requires = "session")]
        until_ended: bool,
    },
    /// Print recorded events.
    Events {
        #[arg(long, default_value_t = 0)]
        since: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// List applications, their variants and QoS dimensions.
    Apps,
    /// List nodes with their hardware and load.
    Nodes,
    /// Manage the world (admins).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Replace the world with a TOML file, in one transaction.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Write the world as a TOML file (stdout by default).
    Export {
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Set a user's password (read from --new-password-file, or stdin).
    Passwd {
        /// Whose password.
        #[arg(value_name = "USER")]
        account: String,
        /// File holding the new password (first line).
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
    /// List users.
    Users,
    /// List groups.
    Groups,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARQ_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("arq: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("arq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_minimum(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((d, l)) if !d.is_empty() && !l.is_empty() => Ok((d.to_string(), l.to_string())),
            _ => bail!("--min takes DIMENSION=LEVEL, not '{item}'"),
        })
        .collect()
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = Output::new(matches!(cli.output, OutputFormat::Json));
    let mut client = signin::connect(&cli).await?;
    if let Command::Login = cli.command {
        let path = signin::save_token(&client)?;
        out.message(&format!(
            "signed in as {}; token saved to {}",
            client.user(),
            path.display()
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    match cli.command {
        Command::Login => unreachable!("handled above"),
        Command::Request {
            application,
            variant,
            minimum,
            dry_run,
            key,
        } => {
            let request = SessionRequest {
                application,
                variant,
                minimum: parse_minimum(&minimum)?,
                dry_run,
                request_key: key,
            };
            let outcome = client.request_session(request).await?;
            out.admission(&outcome, dry_run)?;
            if matches!(outcome, AdmissionOutcome::Rejected { .. }) {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Ls { all } => {
            let filter = if all {
                SessionFilter::All
            } else {
                SessionFilter::Live
            };
            out.sessions(&client.list_sessions(filter).await?)?;
        }
        Command::Show { id } => out.session(&client.show_session(SessionId(id)).await?)?,
        Command::Terminate { id } => {
            out.session(&client.terminate_session(SessionId(id)).await?)?
        }
        Command::Watch {
            since,
            session,
            until_ended,
        } => {
            watch(
                &mut client,
                &out,
                since,
                session.map(SessionId),
                until_ended,
            )
            .await?
        }
        Command::Events { since, limit } => out.events(&client.list_events(since, limit).await?)?,
        Command::Apps => out.applications(&client.list_applications().await?)?,
        Command::Nodes => out.nodes(&client.list_nodes().await?)?,
        Command::Admin(command) => admin(&client, &out, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch(
    client: &mut Client,
    out: &Output,
    since: Option<u64>,
    session: Option<SessionId>,
    until_ended: bool,
) -> anyhow::Result<()> {
    use arq::proto::event::EventKind;
    let wanted = |e: &arq::proto::Event| session.is_none_or(|s| e.session == Some(s));
    let (history, mut live) = client.watch(since).await?;
    let mut last = 0;
    let ended =
        |e: &arq::proto::Event| until_ended && matches!(e.kind, EventKind::SessionEnded { .. });
    for event in history.iter().filter(|e| wanted(e)) {
        last = event.seq;
        out.event(event)?;
        if ended(event) {
            return Ok(());
        }
    }
    if until_ended && let Some(id) = session {
        let current = client.show_session(id).await?;
        if !current.state.is_live() && history.iter().all(|e| !ended(e)) {
            out.message(&format!("session {id} already ended ({})", current.state))?;
            return Ok(());
        }
    }
    while let Some(event) = live.recv().await {
        if event.seq <= last || !wanted(&event) {
            continue;
        }
        out.event(&event)?;
        if ended(&event) {
            return Ok(());
        }
    }
    bail!("the connection to Sesco closed")
}

async fn admin(client: &Client, out: &Output, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            match client.apply_world(&file.display().to_string(), &text).await {
                Ok(()) => out.message(&format!("applied {}", file.display()))?,
                Err(ClientError::WorldRejected(problems)) => {
                    out.world_problems(&problems)?;
                    bail!(
                        "{} was not applied: {} problem(s); nothing changed",
                        file.display(),
                        problems.len()
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        AdminCommand::Export { out: path } => {
            let text = client.export_world().await?;
            match path {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    out.message(&format!("world written to {}", path.display()))?;
                }
                None => print!("{text}"),
            }
        }
        AdminCommand::Passwd {
            account: user,
            new_password_file,
        } => {
            let password = match new_password_file {
                Some(path) => signin::read_secret_file(&path)?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the new password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            client.set_password(&user, &password).await?;
            out.message(&format!("password of {user} changed"))?;
        }
        AdminCommand::Users => out.users(&client.list_users().await?)?,
        AdminCommand::Groups => out.groups(&client.list_groups().await?)?,
    }
    Ok(())
}
