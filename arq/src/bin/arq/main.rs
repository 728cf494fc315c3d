//! `arq`: request, watch and end Sesco sessions; manage the world.

mod render;
mod signin;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use arq::client::{Client, ClientError};
use arq::proto::message::{NodeQuery, NodeSort, SessionFilter, SessionQuery, SessionSort};
use arq::proto::node::NodeState;
use arq::proto::session::{AdmissionOutcome, SessionId, SessionRequest, SessionState};
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
    /// User to sign in as (before the command: after `ls` or `nodes`, --user filters).
    #[arg(long, env = "SESCO_USER")]
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
    /// List sessions (yours; all of them for admins), filtered, sorted and paged by Sesco.
    Ls {
        /// Include ended sessions (the most recent 10,000 of them).
        #[arg(long)]
        all: bool,
        /// Only this user's sessions (admins; others may name only themselves).
        #[arg(long = "user", value_name = "USER")]
        owner: Option<String>,
        /// Only sessions in these states (repeat, or comma-separate). Naming an ended
        /// state implies --all.
        #[arg(long, value_enum, value_delimiter = ',')]
        state: Vec<SessionStateArg>,
        /// Only sessions with a process on this node.
        #[arg(long)]
        node: Option<String>,
        /// Only sessions of this application.
        #[arg(long)]
        application: Option<String>,
        #[command(flatten)]
        page: PageArgs<SessionSortArg>,
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
    /// List nodes with their hardware and load, filtered, sorted and paged by Sesco.
    Nodes {
        /// Only nodes in these states (repeat, or comma-separate).
        #[arg(long, value_enum, value_delimiter = ',')]
        state: Vec<NodeStateArg>,
        /// Only the node of this name.
        #[arg(long)]
        node: Option<String>,
        /// Only nodes carrying this label.
        #[arg(long)]
        label: Option<String>,
        /// Only nodes running a session of this user.
        #[arg(long = "user", value_name = "USER")]
        owner: Option<String>,
        /// Only nodes running a session of this application.
        #[arg(long)]
        application: Option<String>,
        #[command(flatten)]
        page: PageArgs<NodeSortArg>,
    },
    /// Manage the world (admins).
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// Order and size of a list.
#[derive(clap::Args)]
struct PageArgs<S: ValueEnum + Clone + Send + Sync + 'static> {
    /// Sort by this field (ties by id or name).
    #[arg(long, value_enum)]
    sort: Option<S>,
    /// Largest first.
    #[arg(long)]
    reverse: bool,
    /// At most this many (default: every match, read a page at a time).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Skip this many matches first.
    #[arg(long, default_value_t = 0)]
    offset: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum SessionStateArg {
    Starting,
    Running,
    Restarting,
    Finished,
    Failed,
    Terminated,
}

impl From<SessionStateArg> for SessionState {
    fn from(state: SessionStateArg) -> Self {
        match state {
            SessionStateArg::Starting => Self::Starting,
            SessionStateArg::Running => Self::Running,
            SessionStateArg::Restarting => Self::Restarting,
            SessionStateArg::Finished => Self::Finished,
            SessionStateArg::Failed => Self::Failed,
            SessionStateArg::Terminated => Self::Terminated,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SessionSortArg {
    Id,
    User,
    Application,
    State,
    Node,
    Created,
    Utility,
    Weight,
}

impl From<SessionSortArg> for SessionSort {
    fn from(sort: SessionSortArg) -> Self {
        match sort {
            SessionSortArg::Id => Self::Id,
            SessionSortArg::User => Self::User,
            SessionSortArg::Application => Self::Application,
            SessionSortArg::State => Self::State,
            SessionSortArg::Node => Self::Node,
            SessionSortArg::Created => Self::Created,
            SessionSortArg::Utility => Self::Utility,
            SessionSortArg::Weight => Self::Weight,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum NodeStateArg {
    Up,
    Unknown,
    Lost,
}

impl From<NodeStateArg> for NodeState {
    fn from(state: NodeStateArg) -> Self {
        match state {
            NodeStateArg::Up => Self::Up,
            NodeStateArg::Unknown => Self::Unknown,
            NodeStateArg::Lost => Self::Lost,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum NodeSortArg {
    Name,
    State,
    CpuFree,
    MemoryFree,
    Sessions,
    LastHeartbeat,
}

impl From<NodeSortArg> for NodeSort {
    fn from(sort: NodeSortArg) -> Self {
        match sort {
            NodeSortArg::Name => Self::Name,
            NodeSortArg::State => Self::State,
            NodeSortArg::CpuFree => Self::CpuFree,
            NodeSortArg::MemoryFree => Self::MemoryFree,
            NodeSortArg::Sessions => Self::Sessions,
            NodeSortArg::LastHeartbeat => Self::LastHeartbeat,
        }
    }
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
        Command::Ls {
            all,
            owner,
            state,
            node,
            application,
            page,
        } => {
            let states: Vec<SessionState> = state.into_iter().map(Into::into).collect();
            let ended = states.iter().any(|s| !s.is_live());
            let query = SessionQuery {
                scope: if all || ended {
                    SessionFilter::All
                } else {
                    SessionFilter::Live
                },
                user: owner,
                states,
                node,
                application,
                sort: page.sort.map(Into::into).unwrap_or_default(),
                reverse: page.reverse,
                offset: page.offset,
                ..SessionQuery::default()
            };
            let (sessions, total) = client.query_sessions_all(query, page.limit).await?;
            out.sessions(&sessions)?;
            out.shown(sessions.len(), page.offset, total, "sessions")?;
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
        Command::Nodes {
            state,
            node,
            label,
            owner,
            application,
            page,
        } => {
            let query = NodeQuery {
                states: state.into_iter().map(Into::into).collect(),
                node,
                label,
                user: owner,
                application,
                sort: page.sort.map(Into::into).unwrap_or_default(),
                reverse: page.reverse,
                offset: page.offset,
                ..NodeQuery::default()
            };
            let (nodes, total) = client.query_nodes_all(query, page.limit).await?;
            out.nodes(&nodes)?;
            out.shown(nodes.len(), page.offset, total, "nodes")?;
        }
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
