//! A real cluster for end-to-end tests: the `sesco` and `lrmd` binaries started on
//! loopback with temporary directories, the demo world applied, and the demo applications
//! where session users can run them.
//!
//! Tests that use it need root (Lrmd creates cgroups and starts processes as other
//! users); [`require_root`] fails them with a clear message otherwise.

pub mod hollow;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An application whose one process sleeps and registers no control port: sessions that
/// cost next to nothing. Add it with [`Cluster::add_to_world`].
pub const IDLE_APPLICATION: &str = r#"
[[applications]]
name = "idle"
[[applications.variants]]
name = "sleep"
[[applications.variants.processes]]
name = "sleep"
command = ["sleep", "3600"]
cpu = 0.05
memory_mb = 8
[[applications.variants.dimensions]]
name = "level"
levels = [{ name = "only", utility = 0.5 }]
"#;

/// Unix accounts of the demo world.
pub const DEMO_ACCOUNTS: [&str; 3] = ["sesco-admin", "sesco-alice", "sesco-bob"];
/// Demo users' passwords (see scripts/demo-world.toml).
pub const ALICE: (&str, &str) = ("alice", "alice-demo-password");
pub const BOB: (&str, &str) = ("bob", "bob-demo-password");

/// Fails the test unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: Lrmd creates cgroups and runs processes as session users"
    );
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The directory holding the built binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SESCO_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf()
}

/// A built binary of the workspace, or a clear failure saying how to build it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins --examples` first",
        path.display()
    );
    path
}

/// Creates the demo world's unix accounts if they are missing.
pub fn ensure_accounts() {
    for account in DEMO_ACCOUNTS {
        let exists = Command::new("id")
            .arg(account)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            let status = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    account,
                ])
                .status()
                .expect("useradd runs");
            // Another test may have created it meanwhile.
            assert!(
                status.success()
                    || Command::new("id")
                        .arg(account)
                        .status()
                        .is_ok_and(|s| s.success()),
                "cannot create unix account {account}"
            );
        }
    }
}

/// The uid of a unix account.
pub fn uid_of(account: &str) -> u32 {
    nix::unistd::User::from_name(account)
        .expect("passwd is readable")
        .unwrap_or_else(|| panic!("no unix account {account}"))
        .uid
        .as_raw()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("loopback is available")
        .local_addr()
        .expect("bound")
        .port()
}

/// Polls `check` until it returns `Some`, or fails with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What tests compare before and after an input that must change nothing: every session,
/// the world, and the number of events.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub sessions: Value,
    pub world: String,
    pub events: usize,
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: Vec<String>,
    pub node_timeout: &'static str,
    pub ack_timeout: &'static str,
    pub world: PathBuf,
    /// Lifetime of sign-in tokens.
    pub token_ttl: &'static str,
    /// Every part speaks TLS (certificates from `sesco tls init`).
    pub tls: bool,
    /// Runs each Lrmd in a network namespace of its own, joined to the host by a veth
    /// pair: separate "hosts" whose links can be cut.
    pub namespaces: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: vec!["node-a".into()],
            node_timeout: "5s",
            ack_timeout: "2s",
            world: workspace().join("scripts/demo-world.toml"),
            token_ttl: "12h",
            tls: false,
            namespaces: false,
        }
    }
}

/// One running Lrmd.
pub struct Node {
    pub name: String,
    pub child: Option<Child>,
    pub state_dir: PathBuf,
    pub cgroup_base: String,
    /// Its network namespace, when the cluster uses them.
    pub netns: Option<NetNs>,
}

/// A network namespace joined to the host by a veth pair: `host_ip` on the host's end,
/// `ns_ip` inside.
pub struct NetNs {
    pub name: String,
    pub host_veth: String,
    pub ns_veth: String,
    pub host_ip: String,
    pub ns_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out)
    );
}

impl NetNs {
    /// Creates namespace number `index` of a cluster identified by `port`.
    fn create(port: u16, index: usize) -> Self {
        // A /30 per namespace, unique per cluster and node: 10.X.Y.Z.
        let block = ((port as u32) * 8 + index as u32) % (1 << 20);
        let base = (10u32 << 24) | (block << 2);
        let dotted = |a: u32| {
            format!(
                "{}.{}.{}.{}",
                a >> 24,
                (a >> 16) & 255,
                (a >> 8) & 255,
                a & 255
            )
        };
        let ns = Self {
            name: format!("sesco-e2e-{port}-{index}"),
            host_veth: format!("sv{port}x{index}h"),
            ns_veth: format!("sv{port}x{index}n"),
            host_ip: dotted(base + 1),
            ns_ip: dotted(base + 2),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_veth,
        ]);
        ip(&["link", "set", &ns.ns_veth, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_veth,
        ]);
        ip(&["link", "set", &ns.host_veth, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            &ns.ns_veth,
        ]);
        ns.restore();
        ns
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Cuts the namespace's link: nothing gets in or out.
    pub fn cut(&self) {
        self.exec(&["ip", "link", "set", &self.ns_veth, "down"]);
    }

    /// Restores the link (and the route the cut removed).
    pub fn restore(&self) {
        self.exec(&["ip", "link", "set", &self.ns_veth, "up"]);
        self.exec(&["ip", "route", "replace", "default", "via", &self.host_ip]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.host_veth])
            .output();
    }
}

/// Sesco, its Lrmds and a temporary directory, stopped and cleaned when dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub sesco: Option<Child>,
    pub nodes: Vec<Node>,
    pub apps: PathBuf,
    pub options: ClusterOptions,
    /// Distinguishes this cluster's cgroups from every other test's.
    pub tag: String,
}

impl Cluster {
    /// Sesco and one Lrmd (`node-a`), demo world applied.
    pub fn start() -> Self {
        Self::start_with(ClusterOptions::default())
    }

    pub fn start_with(options: ClusterOptions) -> Self {
        require_root();
        ensure_accounts();
        let dir = tempfile::Builder::new()
            .prefix("sesco-e2e-")
            .tempdir()
            .expect("a temporary directory");
        // Session users must be able to reach the demo programs.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let apps = dir.path().join("apps");
        std::fs::create_dir(&apps).expect("apps dir");
        for app in ["examples/encoder", "examples/telemetry", "setpoint-probe"] {
            let from = bin_dir().join(app);
            assert!(
                from.is_file(),
                "{} is not built: run `cargo build --workspace --bins --examples` first",
                from.display()
            );
            std::fs::copy(&from, apps.join(from.file_name().unwrap())).expect("copy demo app");
        }
        let tag = format!(
            "t{}x{}",
            std::process::id(),
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("sesco-e2e-")
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        );
        let port = free_port();
        let mut cluster = Self {
            // With namespaces, Sesco listens on every address: each node reaches it by the
            // host's end of its own veth.
            addr: if options.namespaces {
                format!("0.0.0.0:{port}")
            } else {
                format!("127.0.0.1:{port}")
            },
            dir,
            sesco: None,
            nodes: Vec::new(),
            apps,
            options: options.clone(),
            tag,
        };
        if options.tls {
            let out = Command::new(binary("sesco"))
                .args(["tls", "init", "--name", "127.0.0.1", "--dir"])
                .arg(cluster.tls_dir())
                .output()
                .expect("sesco runs");
            assert!(out.status.success(), "sesco tls init: {}", text(&out));
        }
        cluster.start_sesco();
        for name in &options.nodes {
            cluster.start_node(name);
        }
        let world = options.world.clone();
        let out = cluster.arq_as_admin(&["admin", "apply", "-f", world.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "applying the world failed: {}",
            text(&out)
        );
        for name in &options.nodes {
            cluster.wait_node_up(name);
        }
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("sesco")
    }

    /// Where `sesco tls init` put the certificates, when the cluster speaks TLS.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// The authority clients trust, when the cluster speaks TLS.
    pub fn tls_ca(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.tls_dir().join("ca.pem"))
    }

    /// Starts (or restarts) Sesco on the cluster's address and data directory.
    pub fn start_sesco(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sesco.log"))
            .expect("log");
        let child = Command::new(binary("sesco"))
            .args(["serve", "--listen", &self.addr])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--node-timeout", self.options.node_timeout])
            .args(["--ack-timeout", self.options.ack_timeout])
            .args(["--heartbeat", "250ms"])
            .args(["--token-ttl", self.options.token_ttl])
            .args(if self.options.tls {
                vec![
                    "--tls-cert".to_string(),
                    self.tls_dir().join("sesco.pem").display().to_string(),
                    "--tls-key".to_string(),
                    self.tls_dir().join("sesco.key").display().to_string(),
                ]
            } else {
                Vec::new()
            })
            .env(
                "RUST_LOG",
                std::env::var("SESCO_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sesco starts");
        self.sesco = Some(child);
        let addr = self.client_addr();
        wait_for("sesco to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).ok()
        });
    }

    /// Where clients on the host reach Sesco.
    pub fn client_addr(&self) -> String {
        self.addr.replace("0.0.0.0", "127.0.0.1")
    }

    /// Starts (or restarts) the Lrmd of node `name`.
    pub fn start_node(&mut self, name: &str) {
        let state_dir = self.dir.path().join(format!("lrmd-{name}"));
        let cgroup_base = format!("sesco-e2e/{}/{name}", self.tag);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("lrmd-{name}.log")))
            .expect("log");
        let index = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or(self.nodes.len());
        if self.options.namespaces && self.nodes.get(index).is_none_or(|n| n.netns.is_none()) {
            let port: u16 = self.addr.rsplit(':').next().unwrap().parse().unwrap();
            let netns = NetNs::create(port, index);
            match self.nodes.get_mut(index) {
                Some(node) => node.netns = Some(netns),
                None => self.nodes.push(Node {
                    name: name.to_string(),
                    child: None,
                    state_dir: state_dir.clone(),
                    cgroup_base: cgroup_base.clone(),
                    netns: Some(netns),
                }),
            }
        }
        let (mut command, sesco) = match self.nodes.get(index).and_then(|n| n.netns.as_ref()) {
            Some(ns) => {
                // nsenter joins the network namespace only; `ip netns exec` would also
                // remount /sys and hide the cgroup hierarchies.
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{}", ns.name))
                    .arg("--")
                    .arg(binary("lrmd"));
                let port = self.addr.rsplit(':').next().unwrap();
                (c, format!("{}:{port}", ns.host_ip))
            }
            None => (Command::new(binary("lrmd")), self.addr.clone()),
        };
        if let Some(ca) = self.tls_ca() {
            command.arg("--tls-ca").arg(ca);
        }
        let child = command
            .args(["--sesco", &sesco, "--node", name])
            .arg("--cluster-key-file")
            .arg(self.data_dir().join("cluster.key"))
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--cgroup-base", &cgroup_base])
            .arg("--app-path")
            .arg(&self.apps)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("lrmd starts");
        match self.nodes.iter_mut().find(|n| n.name == name) {
            Some(node) => node.child = Some(child),
            None => self.nodes.push(Node {
                name: name.to_string(),
                child: Some(child),
                state_dir,
                cgroup_base,
                netns: None,
            }),
        }
    }

    /// Waits until Sesco reports `name` up.
    pub fn wait_node_up(&self, name: &str) {
        wait_for(
            &format!("node {name} to be up"),
            Duration::from_secs(20),
            || {
                let nodes = self.arq_json_as_admin(&["nodes"]);
                nodes
                    .as_array()?
                    .iter()
                    .any(|n| n["name"] == name && n["state"] == "Up")
                    .then_some(())
            },
        );
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The first admin's password, written by Sesco on its first start.
    pub fn admin_password_file(&self) -> PathBuf {
        self.data_dir().join("admin-password")
    }

    /// The first admin, as a `(user, password)` pair like [`ALICE`] and [`BOB`].
    pub fn admin(&self) -> (&'static str, String) {
        let password =
            std::fs::read_to_string(self.admin_password_file()).expect("the admin's password file");
        ("admin", password.trim().to_string())
    }

    /// Signs `user` in through the client library, over TLS when the cluster speaks it.
    pub async fn sign_in(
        &self,
        (user, password): (&str, &str),
    ) -> arq::client::Result<arq::client::Client> {
        let tls = self.tls_ca().map(|ca| {
            sesco_proto::transport::ClientTls::from_ca_file(&ca).expect("the cluster's CA")
        });
        arq::client::Client::connect_with(
            &self.client_addr(),
            arq::client::Credentials::Password {
                user: user.into(),
                password: password.into(),
            },
            tls.as_ref(),
        )
        .await
    }

    fn password_file(&self, user: &str, password: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{user}.password"));
        std::fs::write(&path, password).expect("password file");
        path
    }

    /// Runs `arq` as `user` with `password`.
    pub fn arq(&self, (user, password): (&str, &str), args: &[&str]) -> Output {
        let file = self.password_file(user, password);
        self.arq_with_file(user, &file, args)
    }

    pub fn arq_as_admin(&self, args: &[&str]) -> Output {
        self.arq_with_file("admin", &self.admin_password_file(), args)
    }

    fn arq_with_file(&self, user: &str, password_file: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(binary("arq"));
        match self.tls_ca() {
            Some(ca) => command.env("SESCO_TLS_CA", ca),
            None => command.env_remove("SESCO_TLS_CA"),
        };
        command
            .env("SESCO_ADDR", self.client_addr())
            .env("SESCO_USER", user)
            .env("SESCO_PASSWORD_FILE", password_file)
            .env_remove("SESCO_TOKEN")
            .env("HOME", self.dir.path())
            .args(args)
            .output()
            .expect("arq runs")
    }

    /// Runs `arq --output json` and parses its output; fails the test on error.
    pub fn arq_json(&self, who: (&str, &str), args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        parse_json(&self.arq(who, &all))
    }

    pub fn arq_json_as_admin(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        parse_json(&self.arq_as_admin(&all))
    }

    /// Appends TOML tables (applications, users, …) to the current world and applies it.
    pub fn add_to_world(&self, tables: &str) {
        let out = self.arq_as_admin(&["admin", "export"]);
        assert!(out.status.success(), "{}", text(&out));
        let mut world = String::from_utf8(out.stdout).expect("UTF-8");
        world.push('\n');
        world.push_str(tables);
        let file = self.dir.path().join(format!("world-{}.toml", free_port()));
        std::fs::write(&file, world).expect("world file");
        let out = self.arq_as_admin(&["admin", "apply", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    }

    /// CPUs node `name` offers to sessions.
    pub fn cpu_capacity(&self, name: &str) -> f64 {
        let nodes = self.arq_json_as_admin(&["nodes"]);
        nodes
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == name))
            .and_then(|n| n["resources"][0]["capacity"].as_f64())
            .unwrap_or_else(|| panic!("no CPU capacity for {name}: {nodes}"))
    }

    /// The log (stdout and stderr) of a session's process on its node.
    pub fn process_log(&self, node: &str, session: u64, process_name: &str) -> String {
        std::fs::read_to_string(
            self.node(node)
                .state_dir
                .join("logs")
                .join(format!("session-{session}.{process_name}.log")),
        )
        .unwrap_or_default()
    }

    /// Everything an input that must change nothing could change.
    pub fn snapshot(&self) -> Snapshot {
        let world = self.arq_as_admin(&["admin", "export"]);
        assert!(world.status.success(), "{}", text(&world));
        let mut sessions = self.arq_json_as_admin(&["ls", "--all"]);
        // Measured usage and achieved QoS move on by themselves; everything else must not.
        for session in sessions.as_array_mut().into_iter().flatten() {
            for process in session["processes"].as_array_mut().into_iter().flatten() {
                process["usage"] = Value::Null;
                process["achieved"] = Value::Null;
            }
        }
        Snapshot {
            sessions,
            world: String::from_utf8(world.stdout).expect("UTF-8"),
            events: self.events().len(),
        }
    }

    /// Recorded events, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.arq_json_as_admin(&["events", "--since", "0", "--limit", "1000"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Session `id`'s events as `who` sees them, oldest first: `arq watch` followed to the
    /// session's end.
    pub fn watch_until_ended(&self, who: (&str, &str), id: u64) -> Vec<Value> {
        let id = id.to_string();
        let out = self.arq(
            who,
            &[
                "--output",
                "json",
                "watch",
                "--since",
                "0",
                "--session",
                &id,
                "--until-ended",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON event per line"))
            .collect()
    }

    /// Requests a session as `who` and returns the admitted session's JSON.
    pub fn request(&self, who: (&str, &str), args: &[&str]) -> Value {
        let mut all = vec!["request"];
        all.extend_from_slice(args);
        let outcome = self.arq_json(who, &all);
        outcome
            .get("Admitted")
            .and_then(|a| a.get("session"))
            .cloned()
            .unwrap_or_else(|| panic!("session not admitted: {outcome}"))
    }

    /// `arq show ID` as an admin.
    pub fn show(&self, id: u64) -> Value {
        self.arq_json_as_admin(&["show", &id.to_string()])
    }

    /// Kills Sesco with SIGKILL.
    pub fn kill_sesco(&mut self) {
        if let Some(mut child) = self.sesco.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills a node's Lrmd with SIGKILL.
    pub fn kill_node(&mut self, name: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"));
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log of Sesco or of a node, for failure messages.
    pub fn log(&self, which: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{which}.log"))).unwrap_or_default()
    }

    /// Every cgroup directory under this cluster's bases, on every hierarchy.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let base = format!("sesco-e2e/{}", self.tag);
        for root in cgroup_roots() {
            let dir = root.join(&base);
            if dir.exists() {
                collect_dirs(&dir, &mut found);
            }
        }
        found
    }
}

/// Mount points of cgroup hierarchies (v2 and every v1 controller).
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, fstype) = (f.next()?, f.next()?, f.next()?);
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop every session first, so nothing is left running.
        if self.sesco.is_some() {
            let live = self.arq_json_as_admin(&["ls"]);
            for s in live.as_array().into_iter().flatten() {
                if let Some(id) = s["id"].as_u64() {
                    let _ = self.arq_as_admin(&["terminate", &id.to_string()]);
                }
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.kill_sesco();
        // Whatever a failed test left: kill it and remove the cgroups, deepest first.
        let mut leftovers = self.cgroups();
        leftovers.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in &leftovers {
            for file in ["cgroup.procs", "tasks"] {
                if let Ok(pids) = std::fs::read_to_string(dir.join(file)) {
                    for pid in pids.lines().filter_map(|p| p.parse::<i32>().ok()) {
                        // SAFETY: kill has no memory effects.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        for dir in &leftovers {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::env::var_os("SESCO_E2E_KEEP").is_some() {
            let kept = self.dir.path().to_path_buf();
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("a temporary directory"),
            );
            let _ = dir.keep();
            eprintln!("kept {}", kept.display());
        }
    }
}

/// stdout and stderr of a command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses a command's stdout as JSON, failing the test with its output otherwise.
pub fn parse_json(out: &Output) -> Value {
    assert!(out.status.success(), "command failed: {}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// Whether a process exists.
pub fn alive(pid: u32) -> bool {
    // Zombies count as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The real uid of a running process.
pub fn process_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("a Uid line")
}
