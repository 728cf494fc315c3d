//! A cluster of hollow nodes: the real `sesco serve` on loopback with a temporary data
//! directory, and the `hollow-nodes` test tool simulating N Lrmds against it (see
//! `docs/hollow-nodes.md`). Needs no root: nothing runs on the simulated nodes, and the
//! world's users run as `nobody`, an account every Debian host has.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{IDLE_APPLICATION, binary, free_port, wait_for};

/// The users of a hollow cluster, with their passwords.
pub const HOLLOW_USERS: [(&str, &str); 2] = [
    ("alice", "alice-hollow-password"),
    ("bob", "bob-hollow-password"),
];

/// The world of a hollow cluster: the first admin, two users, the idle application.
fn world() -> String {
    let mut world = String::from(
        r#"
[[groups]]
name = "admins"
priority = 1.0

[[groups]]
name = "research"
priority = 2.0

[[users]]
name = "admin"
unix_account = "nobody"
group = "admins"
admin = true
"#,
    );
    for (user, _) in HOLLOW_USERS {
        world.push_str(&format!(
            "\n[[users]]\nname = \"{user}\"\nunix_account = \"nobody\"\ngroup = \"research\"\n"
        ));
    }
    world.push_str(IDLE_APPLICATION);
    world
}

/// A request for one session of the idle application (one process, 0.05 CPU, 8 MiB).
pub fn idle_request() -> arq::proto::session::SessionRequest {
    arq::proto::session::SessionRequest {
        application: "idle".into(),
        variant: None,
        minimum: Vec::new(),
        dry_run: false,
        request_key: None,
    }
}

/// How to start a hollow cluster.
#[derive(Debug, Clone)]
pub struct HollowOptions {
    pub nodes: u32,
    /// Sesco's `--heartbeat`.
    pub heartbeat: &'static str,
    pub node_timeout: &'static str,
    pub ack_timeout: &'static str,
    pub max_sessions_per_user: usize,
    /// More arguments for `hollow-nodes`.
    pub harness_args: Vec<String>,
    /// How long every node has to come up.
    pub up_within: Duration,
}

impl Default for HollowOptions {
    fn default() -> Self {
        Self {
            nodes: 50,
            heartbeat: "1s",
            node_timeout: "10s",
            ack_timeout: "2s",
            max_sessions_per_user: 4096,
            harness_args: Vec::new(),
            up_within: Duration::from_secs(60),
        }
    }
}

/// Sesco and a `hollow-nodes` process, stopped when dropped.
pub struct HollowCluster {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub sesco: Child,
    pub harness: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Every event the harness printed, in order.
    pub events: Arc<Mutex<Vec<Value>>>,
    pub options: HollowOptions,
}

impl HollowCluster {
    pub fn start(options: HollowOptions) -> Self {
        let nobody = nix::unistd::User::from_name("nobody").ok().flatten();
        assert!(
            nobody.is_some_and(|u| !u.uid.is_root()),
            "a hollow cluster's users run as 'nobody': this host has no such account"
        );
        let dir = tempfile::Builder::new()
            .prefix("sesco-hollow-")
            .tempdir()
            .expect("a temporary directory");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("sesco.log")).expect("log");
        let sesco = Command::new(binary("sesco"))
            .args(["serve", "--listen", &addr])
            .arg("--data-dir")
            .arg(dir.path().join("sesco"))
            .args(["--heartbeat", options.heartbeat])
            .args(["--node-timeout", options.node_timeout])
            .args(["--ack-timeout", options.ack_timeout])
            .args([
                "--max-sessions-per-user",
                &options.max_sessions_per_user.to_string(),
            ])
            .args(["--max-connections", "100000"])
            .env(
                "RUST_LOG",
                std::env::var("SESCO_E2E_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sesco starts");
        wait_for("sesco to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).ok()
        });
        let mut cluster = Self {
            addr,
            sesco,
            harness: None,
            stdin: None,
            events: Arc::default(),
            options,
            dir,
        };
        cluster.apply_world();
        cluster.start_harness();
        cluster.wait_nodes_up(cluster.options.nodes as usize, cluster.options.up_within);
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("sesco")
    }

    /// The first admin's `(user, password)`.
    pub fn admin(&self) -> (String, String) {
        let password = std::fs::read_to_string(self.data_dir().join("admin-password"))
            .expect("the admin's password file");
        ("admin".into(), password.trim().to_string())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    fn apply_world(&self) {
        let (admin, password) = self.admin();
        Self::runtime().block_on(async {
            let client = self
                .sign_in(&admin, &password)
                .await
                .expect("admin signs in");
            client
                .apply_world("hollow world", &world())
                .await
                .expect("the hollow world applies");
            for (user, password) in HOLLOW_USERS {
                client
                    .set_password(user, password)
                    .await
                    .expect("password set");
            }
        });
    }

    fn start_harness(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("hollow-nodes.log")).expect("log");
        let mut harness = Command::new(binary("hollow-nodes"))
            .args(["--sesco", &self.addr])
            .arg("--cluster-key-file")
            .arg(self.data_dir().join("cluster.key"))
            .args(["--nodes", &self.options.nodes.to_string()])
            .args(&self.options.harness_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("hollow-nodes starts");
        self.stdin = harness.stdin.take();
        let stdout = harness.stdout.take().expect("piped");
        let events = self.events.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str(&line) {
                    Ok(event) => events.lock().unwrap().push(event),
                    Err(e) => panic!("hollow-nodes printed a line that is not JSON ({e}): {line}"),
                }
            }
        });
        self.harness = Some(harness);
    }

    /// Signs a user in through the client library.
    pub async fn sign_in(
        &self,
        user: &str,
        password: &str,
    ) -> arq::client::Result<arq::client::Client> {
        arq::client::Client::connect(
            &self.addr,
            arq::client::Credentials::Password {
                user: user.into(),
                password: password.into(),
            },
        )
        .await
    }

    /// Waits until Sesco reports at least `count` nodes up.
    pub fn wait_nodes_up(&self, count: usize, within: Duration) {
        let (admin, password) = self.admin();
        let runtime = Self::runtime();
        let client = runtime
            .block_on(self.sign_in(&admin, &password))
            .expect("admin signs in");
        wait_for(&format!("{count} nodes up"), within, || {
            let nodes = runtime.block_on(client.list_nodes()).ok()?;
            let up = nodes
                .iter()
                .filter(|n| n.state == sesco_proto::node::NodeState::Up)
                .count();
            std::thread::sleep(Duration::from_millis(200));
            (up >= count).then_some(())
        });
    }

    /// Sends one command line to the harness (`exit SESSION PROCESS CODE`, …).
    pub fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the harness's stdin");
        writeln!(stdin, "{line}").expect("the harness reads its commands");
        stdin.flush().expect("flushed");
    }

    /// The events of one kind the harness printed so far.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }

    /// Sesco's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sesco.log")).unwrap_or_default()
    }
}

impl Drop for HollowCluster {
    fn drop(&mut self) {
        for child in self.harness.iter_mut().chain([&mut self.sesco]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
