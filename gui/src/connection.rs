//! The link to Sesco: an `arq::Client` on a tokio runtime in a background thread.
//!
//! The UI thread never waits on the network. It sends [`Command`]s and, once per frame,
//! takes the [`Update`]s the worker produced; every update also asks egui for a repaint.
//! The worker keeps the app live through Sesco's event stream (`Client::watch`), samples
//! sessions and nodes every second for the usage charts, and reconnects by itself.

use std::sync::Arc;
use std::time::Duration;

use arq::client::{Client, ClientError, Credentials};
use arq::proto::ErrorCode;
use arq::proto::event::{Event, EventKind};
use arq::proto::message::{Identity, SessionFilter, WorldProblem};
use arq::proto::node::NodeView;
use arq::proto::peer::HandshakeError;
use arq::proto::session::{AdmissionOutcome, SessionId, SessionRequest, SessionView};
use arq::proto::world::{ApplicationDef, GroupDef, UserDef};
use tokio::sync::{mpsc, oneshot};

/// How many past events the app loads when it signs in.
pub const EVENT_HISTORY: u64 = 500;
/// How often sessions and nodes are sampled for their usage.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Reconnect delays: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_LAST: Duration = Duration::from_secs(8);

/// Where to sign in, and as whom.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub server: String,
    pub credentials: Credentials,
    pub tls: Option<sesco_proto::transport::ClientTls>,
}

/// What the UI asks of Sesco.
#[derive(Debug, Clone)]
pub enum Command {
    /// A session request with `dry_run` set: what Sesco would do.
    DryRun(SessionRequest),
    Request(SessionRequest),
    Terminate(SessionId),
    PutUser {
        user: UserDef,
        /// Set right after the user is saved, when given.
        password: Option<String>,
    },
    DeleteUser(String),
    SetPassword {
        user: String,
        password: String,
    },
    PutGroup(GroupDef),
    DeleteGroup(String),
    PutApplication(ApplicationDef),
    DeleteApplication(String),
    ExportWorld,
    ApplyWorld {
        source: String,
        toml: String,
    },
    /// Reload everything now.
    Refresh,
}

/// Why a command failed, in words, with the world problems Sesco named.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    pub problems: Vec<WorldProblem>,
}

impl Failure {
    fn from_client(error: ClientError) -> Self {
        match error {
            ClientError::WorldRejected(problems) => Self {
                message: format!(
                    "Sesco refused the change: {} problem{}",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                ),
                problems,
            },
            other => Self {
                message: other.to_string(),
                problems: Vec::new(),
            },
        }
    }

    /// One line per problem Sesco named, or the message when it named none.
    pub fn lines(&self) -> Vec<String> {
        if self.problems.is_empty() {
            vec![self.message.clone()]
        } else {
            self.problems.iter().map(|p| p.to_string()).collect()
        }
    }

    fn offline() -> Self {
        Self {
            message: "not connected to Sesco: reconnecting, try again in a moment".into(),
            problems: Vec::new(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Which part of the world an admin change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTarget {
    User,
    Group,
    Application,
    Password,
}

/// The answer to one command.
#[derive(Debug, Clone)]
pub enum Outcome {
    DryRun(Result<AdmissionOutcome, Failure>),
    Requested(Result<AdmissionOutcome, Failure>),
    Terminated(SessionId, Result<SessionView, Failure>),
    Admin {
        target: AdminTarget,
        /// What was done, e.g. "saved user carol".
        what: String,
        result: Result<(), Failure>,
    },
    WorldExported(Result<String, Failure>),
    WorldApplied(Result<(), Failure>),
}

/// Whether the worker holds a live connection.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    Connected,
    Reconnecting { attempt: u32, last_error: String },
}

/// What the worker tells the UI.
#[derive(Debug, Clone)]
pub enum Update {
    SignedIn {
        user: String,
        admin: bool,
        server: String,
    },
    /// Signing in failed for good (unreachable at first, or credentials refused); the
    /// worker has stopped.
    SignInFailed(String),
    Link(LinkState),
    Applications(Vec<ApplicationDef>),
    /// Every recent session (`complete`), or only the live ones with fresh usage.
    Sessions {
        sessions: Vec<SessionView>,
        complete: bool,
    },
    Nodes(Vec<NodeView>),
    Users(Vec<UserDef>),
    Groups(Vec<GroupDef>),
    Events(Vec<Event>),
    Outcome(Outcome),
}

/// The UI's handle on the worker. Dropping it stops the worker.
pub struct Connection {
    commands: mpsc::UnboundedSender<Command>,
    updates: std::sync::mpsc::Receiver<Update>,
    _stop: oneshot::Sender<()>,
}

impl Connection {
    /// Starts the worker thread, which signs in right away.
    pub fn start(sign_in: SignIn, ctx: egui::Context) -> Self {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (update_tx, updates) = std::sync::mpsc::channel();
        let (stop, stop_rx) = oneshot::channel();
        let notifier = Notifier { tx: update_tx, ctx };
        std::thread::Builder::new()
            .name("sesco-link".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("sesco-link-rt")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        notifier.send(Update::SignInFailed(format!(
                            "cannot start the network runtime: {e}"
                        )));
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        () = worker(sign_in, command_rx, notifier) => {}
                        _ = stop_rx => {}
                    }
                });
                // Do not wait for calls still in flight: the app is closing or signing out.
                runtime.shutdown_background();
            })
            .expect("the OS lets us start a thread");
        Self {
            commands,
            updates,
            _stop: stop,
        }
    }

    /// Queues a command; its outcome comes back as an [`Update::Outcome`].
    pub fn send(&self, command: Command) {
        // The worker only stops when this handle is dropped or signing in failed; in the
        // latter case the UI has already left this connection.
        let _ = self.commands.send(command);
    }

    /// Every update that arrived since the last call.
    pub fn poll(&self) -> Vec<Update> {
        self.updates.try_iter().collect()
    }
}

/// Sends updates to the UI and wakes it.
#[derive(Clone)]
struct Notifier {
    tx: std::sync::mpsc::Sender<Update>,
    ctx: egui::Context,
}

impl Notifier {
    fn send(&self, update: Update) {
        if self.tx.send(update).is_ok() {
            self.ctx.request_repaint();
        }
    }
}

/// The words a person needs when signing in fails.
pub fn explain_sign_in_error(server: &str, error: &ClientError) -> String {
    match error {
        ClientError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            format!("Sesco at {server} did not answer: {source}.")
        }
        ClientError::Connect { source, .. } => format!(
            "Cannot reach Sesco at {server}: {source}. Check the address and that Sesco is running."
        ),
        ClientError::Handshake(HandshakeError::Refused(reply))
            if reply.code == ErrorCode::Unauthenticated =>
        {
            format!("Sesco refused the sign-in: {}", reply.message)
        }
        other => format!("Cannot sign in to Sesco at {server}: {other}"),
    }
}

/// Whether Sesco refused the credentials themselves (as opposed to being unreachable).
fn credentials_refused(error: &ClientError) -> bool {
    error.code() == Some(ErrorCode::Unauthenticated)
}

/// `host` alone means Sesco's default port.
pub fn normalise_address(server: &str) -> String {
    let server = server.trim().trim_end_matches(':');
    if server.parse::<std::net::SocketAddr>().is_ok() {
        return server.to_string();
    }
    let port = arq::proto::DEFAULT_SESCO_PORT;
    match server.rsplit_once(':') {
        Some((host, digits))
            if !host.contains(':')
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            server.to_string()
        }
        // A bare IPv6 address.
        Some(_) if !server.starts_with('[') => format!("[{server}]:{port}"),
        _ => format!("{server}:{port}"),
    }
}

fn token_of(client: &Client) -> Option<String> {
    match client.identity() {
        Identity::User { token, .. } => Some(token.clone()),
        _ => None,
    }
}

/// Signs in, then serves commands and events until the UI lets go.
async fn worker(sign_in: SignIn, mut commands: mpsc::UnboundedReceiver<Command>, ui: Notifier) {
    let server = normalise_address(&sign_in.server);
    let client = match Client::connect_with(
        &server,
        sign_in.credentials.clone(),
        sign_in.tls.as_ref(),
    )
    .await
    {
        Ok(client) => client,
        Err(e) => {
            ui.send(Update::SignInFailed(explain_sign_in_error(&server, &e)));
            return;
        }
    };
    ui.send(Update::SignedIn {
        user: client.user().to_string(),
        admin: client.is_admin(),
        server: server.clone(),
    });
    let mut token = token_of(&client);
    let mut client = Some(client);
    let mut last_seq: Option<u64> = None;
    let mut attempt = 0u32;
    loop {
        let current = match client.take() {
            Some(client) => client,
            None => {
                // Reconnect: the token first, then the original credentials.
                let first = match &token {
                    Some(token) => Credentials::Token(token.clone()),
                    None => sign_in.credentials.clone(),
                };
                let Some(mut result) = answering_offline(
                    Client::connect_with(&server, first, sign_in.tls.as_ref()),
                    &mut commands,
                    &ui,
                )
                .await
                else {
                    return;
                };
                if let Err(e) = &result
                    && credentials_refused(e)
                    && token.is_some()
                {
                    let again = sign_in.credentials.clone();
                    match answering_offline(
                        Client::connect_with(&server, again, sign_in.tls.as_ref()),
                        &mut commands,
                        &ui,
                    )
                    .await
                    {
                        Some(r) => result = r,
                        None => return,
                    }
                }
                match result {
                    Ok(client) => client,
                    Err(e) if credentials_refused(&e) => {
                        ui.send(Update::SignInFailed(explain_sign_in_error(&server, &e)));
                        return;
                    }
                    Err(e) => {
                        attempt += 1;
                        ui.send(Update::Link(LinkState::Reconnecting {
                            attempt,
                            last_error: explain_sign_in_error(&server, &e),
                        }));
                        let delay = RETRY_FIRST
                            .saturating_mul(1 << attempt.min(5))
                            .min(RETRY_LAST);
                        if answering_offline(tokio::time::sleep(delay), &mut commands, &ui)
                            .await
                            .is_none()
                        {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        if let Some(new) = token_of(&current) {
            token = Some(new);
        }
        match serve(current, &mut commands, &ui, &mut last_seq).await {
            Ended::UiGone => return,
            Ended::Lost(reason) => {
                attempt = 0;
                ui.send(Update::Link(LinkState::Reconnecting {
                    attempt,
                    last_error: reason,
                }));
                if answering_offline(tokio::time::sleep(RETRY_FIRST), &mut commands, &ui)
                    .await
                    .is_none()
                {
                    return;
                }
            }
        }
    }
}

/// Waits for `work`, answering commands with "not connected" meanwhile. `None` when the UI
/// let go.
async fn answering_offline<T>(
    work: impl std::future::Future<Output = T>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    ui: &Notifier,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            command = commands.recv() => match command {
                None => return None,
                Some(command) => {
                    if let Some(outcome) = offline_outcome(command) {
                        ui.send(Update::Outcome(outcome));
                    }
                }
            }
        }
    }
}

/// The failure a command gets while there is no connection.
fn offline_outcome(command: Command) -> Option<Outcome> {
    fn failure<T>() -> Result<T, Failure> {
        Err(Failure::offline())
    }
    Some(match command {
        Command::DryRun(_) => Outcome::DryRun(failure()),
        Command::Request(_) => Outcome::Requested(failure()),
        Command::Terminate(id) => Outcome::Terminated(id, failure()),
        Command::PutUser { user, .. } => Outcome::Admin {
            target: AdminTarget::User,
            what: format!("save user {}", user.name),
            result: failure(),
        },
        Command::DeleteUser(name) => Outcome::Admin {
            target: AdminTarget::User,
            what: format!("delete user {name}"),
            result: failure(),
        },
        Command::SetPassword { user, .. } => Outcome::Admin {
            target: AdminTarget::Password,
            what: format!("set the password of {user}"),
            result: failure(),
        },
        Command::PutGroup(group) => Outcome::Admin {
            target: AdminTarget::Group,
            what: format!("save group {}", group.name),
            result: failure(),
        },
        Command::DeleteGroup(name) => Outcome::Admin {
            target: AdminTarget::Group,
            what: format!("delete group {name}"),
            result: failure(),
        },
        Command::PutApplication(app) => Outcome::Admin {
            target: AdminTarget::Application,
            what: format!("save application {}", app.name),
            result: failure(),
        },
        Command::DeleteApplication(name) => Outcome::Admin {
            target: AdminTarget::Application,
            what: format!("delete application {name}"),
            result: failure(),
        },
        Command::ExportWorld => Outcome::WorldExported(failure()),
        Command::ApplyWorld { .. } => Outcome::WorldApplied(failure()),
        Command::Refresh => return None,
    })
}

enum Ended {
    UiGone,
    Lost(String),
}

/// What needs reloading after events.
#[derive(Default)]
struct Dirty {
    sessions: bool,
    nodes: bool,
    world: bool,
}

impl Dirty {
    fn any(&self) -> bool {
        self.sessions || self.nodes || self.world
    }

    fn note(&mut self, event: &Event) {
        match &event.kind {
            EventKind::NodeUp { .. } | EventKind::NodeLost { .. } => self.nodes = true,
            EventKind::NodeReconciled { .. } => {
                self.nodes = true;
                self.sessions = true;
            }
            EventKind::WorldChanged { .. } => {
                self.world = true;
                self.nodes = true;
                self.sessions = true;
            }
            // Every other event is a step of some session's life.
            _ => {
                self.sessions = true;
                self.nodes = true;
            }
        }
    }
}

/// The newest event seq this user may see, found with a few small requests.
async fn latest_seq(client: &Client) -> Result<u64, ClientError> {
    // The first visible event after `seq`, if any: there is one exactly when `seq` is
    // below the newest.
    let first_after = |seq: u64| async move {
        client
            .list_events(seq, 1)
            .await
            .map(|events| events.first().map(|e| e.seq))
    };
    let Some(mut low) = first_after(0).await? else {
        return Ok(0);
    };
    // `low` is a visible event; `high` has nothing after it. Grow, then bisect.
    let mut step = 1024u64;
    let mut high = loop {
        let probe = low.saturating_add(step);
        match first_after(probe).await? {
            Some(seq) => {
                low = seq;
                step = step.saturating_mul(4);
            }
            None => break probe,
        }
    };
    while low < high {
        let mid = low + (high - low) / 2;
        match first_after(mid).await? {
            Some(seq) => low = seq,
            None => high = mid,
        }
    }
    Ok(low)
}

async fn load_world(client: &Client, ui: &Notifier, admin: bool) -> Result<(), ClientError> {
    ui.send(Update::Applications(client.list_applications().await?));
    ui.send(Update::Groups(client.list_groups().await?));
    let users = client.list_users().await?;
    if admin || !users.is_empty() {
        ui.send(Update::Users(users));
    }
    Ok(())
}

async fn load_sessions(client: &Client, ui: &Notifier, complete: bool) -> Result<(), ClientError> {
    let filter = if complete {
        SessionFilter::All
    } else {
        SessionFilter::Live
    };
    let sessions = client.list_sessions(filter).await?;
    ui.send(Update::Sessions { sessions, complete });
    Ok(())
}

async fn load_nodes(client: &Client, ui: &Notifier) -> Result<(), ClientError> {
    ui.send(Update::Nodes(client.list_nodes().await?));
    Ok(())
}

/// Serves one connection until it is lost or the UI lets go.
async fn serve(
    mut client: Client,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    ui: &Notifier,
    last_seq: &mut Option<u64>,
) -> Ended {
    let admin = client.is_admin();
    let since = match *last_seq {
        Some(seq) => seq,
        None => match latest_seq(&client).await {
            Ok(latest) => latest.saturating_sub(EVENT_HISTORY),
            Err(e) => return Ended::Lost(e.to_string()),
        },
    };
    let (history, mut events) = match client.watch(Some(since)).await {
        Ok(watch) => watch,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    if let Some(last) = history.last() {
        *last_seq = Some(last.seq);
    } else if last_seq.is_none() {
        *last_seq = Some(since);
    }
    let loaded = async {
        load_world(&client, ui, admin).await?;
        load_sessions(&client, ui, true).await?;
        load_nodes(&client, ui).await
    }
    .await;
    if let Err(e) = loaded {
        return Ended::Lost(e.to_string());
    }
    ui.send(Update::Events(history));
    ui.send(Update::Link(LinkState::Connected));

    let client = Arc::new(client);
    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel::<Dirty>();
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = Dirty::default();
    // Events come in bursts (admission, start, set-point…): reload once per burst.
    let settle = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return Ended::UiGone };
                if matches!(command, Command::Refresh) {
                    let _ = reload_tx.send(Dirty { sessions: true, nodes: true, world: true });
                    continue;
                }
                let changes = !matches!(command, Command::DryRun(_) | Command::ExportWorld);
                let (client, ui, reload) = (client.clone(), ui.clone(), reload_tx.clone());
                tokio::spawn(async move {
                    if let Some(outcome) = run_command(&client, command).await {
                        ui.send(Update::Outcome(outcome));
                    }
                    // Whatever changed will also come as events; reloading now makes
                    // the answer and the tables agree at once.
                    if changes {
                        let _ = reload.send(Dirty { sessions: true, nodes: true, world: true });
                    }
                });
            }
            event = events.recv() => {
                let Some(event) = event else {
                    return Ended::Lost("the connection to Sesco closed".into());
                };
                let mut batch = vec![event];
                while let Ok(more) = events.try_recv() {
                    batch.push(more);
                }
                batch.retain(|e| last_seq.is_none_or(|last| e.seq > last));
                if let Some(last) = batch.last() {
                    *last_seq = Some(last.seq);
                }
                for event in &batch {
                    dirty.note(event);
                }
                if !batch.is_empty() {
                    ui.send(Update::Events(batch));
                    settle.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(50));
                }
            }
            () = &mut settle, if dirty.any() => {
                let now = std::mem::take(&mut dirty);
                if let Err(e) = reload(&client, ui, admin, &now).await {
                    return Ended::Lost(e.to_string());
                }
            }
            Some(asked) = reload_rx.recv() => {
                if let Err(e) = reload(&client, ui, admin, &asked).await {
                    return Ended::Lost(e.to_string());
                }
            }
            _ = sample.tick() => {
                if !client.is_connected() {
                    return Ended::Lost("the connection to Sesco closed".into());
                }
                let sampled = async {
                    load_sessions(&client, ui, false).await?;
                    load_nodes(&client, ui).await
                }.await;
                if let Err(e) = sampled {
                    return Ended::Lost(e.to_string());
                }
            }
        }
    }
}

async fn reload(
    client: &Client,
    ui: &Notifier,
    admin: bool,
    what: &Dirty,
) -> Result<(), ClientError> {
    if what.world {
        load_world(client, ui, admin).await?;
    }
    if what.sessions {
        load_sessions(client, ui, true).await?;
    }
    if what.nodes {
        load_nodes(client, ui).await?;
    }
    Ok(())
}

async fn run_command(client: &Client, command: Command) -> Option<Outcome> {
    let admin = |target, what: String, result: Result<(), ClientError>| Outcome::Admin {
        target,
        what,
        result: result.map_err(Failure::from_client),
    };
    Some(match command {
        Command::DryRun(mut request) => {
            request.dry_run = true;
            Outcome::DryRun(
                client
                    .request_session(request)
                    .await
                    .map_err(Failure::from_client),
            )
        }
        Command::Request(mut request) => {
            request.dry_run = false;
            Outcome::Requested(
                client
                    .request_session(request)
                    .await
                    .map_err(Failure::from_client),
            )
        }
        Command::Terminate(id) => Outcome::Terminated(
            id,
            client
                .terminate_session(id)
                .await
                .map_err(Failure::from_client),
        ),
        Command::PutUser { user, password } => {
            let name = user.name.clone();
            let mut result = client.put_user(user).await;
            if result.is_ok()
                && let Some(password) = password
            {
                result = client.set_password(&name, &password).await;
            }
            admin(AdminTarget::User, format!("saved user {name}"), result)
        }
        Command::DeleteUser(name) => {
            let result = client.delete_user(&name).await;
            admin(AdminTarget::User, format!("deleted user {name}"), result)
        }
        Command::SetPassword { user, password } => {
            let result = client.set_password(&user, &password).await;
            admin(
                AdminTarget::Password,
                format!("set the password of {user}"),
                result,
            )
        }
        Command::PutGroup(group) => {
            let name = group.name.clone();
            let result = client.put_group(group).await;
            admin(AdminTarget::Group, format!("saved group {name}"), result)
        }
        Command::DeleteGroup(name) => {
            let result = client.delete_group(&name).await;
            admin(AdminTarget::Group, format!("deleted group {name}"), result)
        }
        Command::PutApplication(app) => {
            let name = app.name.clone();
            let result = client.put_application(app).await;
            admin(
                AdminTarget::Application,
                format!("saved application {name}"),
                result,
            )
        }
        Command::DeleteApplication(name) => {
            let result = client.delete_application(&name).await;
            admin(
                AdminTarget::Application,
                format!("deleted application {name}"),
                result,
            )
        }
        Command::ExportWorld => {
            Outcome::WorldExported(client.export_world().await.map_err(Failure::from_client))
        }
        Command::ApplyWorld { source, toml } => Outcome::WorldApplied(
            client
                .apply_world(&source, &toml)
                .await
                .map_err(Failure::from_client),
        ),
        Command::Refresh => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_gets_the_default_port() {
        assert_eq!(normalise_address("sesco.lan"), "sesco.lan:7207");
        assert_eq!(normalise_address(" 127.0.0.1:9000 "), "127.0.0.1:9000");
        assert_eq!(normalise_address("[::1]:7207"), "[::1]:7207");
        assert_eq!(normalise_address("localhost:"), "localhost:7207");
        assert_eq!(normalise_address("::1"), "[::1]:7207");
    }
}
