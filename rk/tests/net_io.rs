//! Egress bandwidth and block I/O reservations on this host's kernel.
//!
//! Traffic only ever goes over a veth pair made here: one end stays in this network
//! namespace (rk shapes it), the other lives in a namespace of the test's own where
//! `rk probe net-sink` counts what arrives. Both are removed on drop.
//!
//! * `lifecycle_net_*`: bad input, a foreign qdisc: quick, parallel-safe.
//! * `enforcement_net_*`, `enforcement_io_*`: measure rates; one at a time.
//!
//! Every test needs root, cgroups, `ip`, `tc` and `nft`; each fails with a
//! `PRECONDITION:` message when one is missing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rk::probe::{DirectWriteReport, NetSendReport, NetSinkReport};
use rk::{
    Host, IoLimit, KernelConfig, NetLimit, Reservation, ReservationSpec, ResourceKernel, RkError,
    SpawnOptions,
};

const RK: &str = env!("CARGO_BIN_EXE_rk");

fn require_root_and_tools() -> Host {
    let host = Host::detect().unwrap_or_else(|e| panic!("PRECONDITION: cannot detect host: {e}"));
    if let Err(e) = host.require_cgroups(host.reservation_controllers()) {
        panic!("PRECONDITION: these tests need root with cgroups: {e}");
    }
    for tool in ["ip", "tc", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "PRECONDITION: `{tool}` is not installed (apt-get install iproute2 nftables)"
        );
    }
    host
}

fn sh(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair: `host_end` here, `sink_end` in namespace `ns` with `sink_addr`.
struct Link {
    ns: String,
    host_end: String,
    sink_addr: String,
}

impl Link {
    fn new(tag: &str) -> Link {
        let id = std::process::id() % 100_000;
        let ns = format!("rk-sink-{tag}-{id}");
        let host_end = format!("rk{tag}{id}");
        assert!(host_end.len() <= 15, "interface name {host_end} too long");
        // A /30 of its own per test and process, inside 10.201.0.0/16.
        let octet = (id % 250) as u8;
        let third = match tag {
            "a" => 1,
            "b" => 2,
            _ => 3,
        };
        let (host_addr, sink_addr) = (
            format!("10.{}.{octet}.1", 200 + third),
            format!("10.{}.{octet}.2", 200 + third),
        );
        for stale in [["netns", "del", &ns], ["link", "del", &host_end]] {
            let _ = Command::new("ip")
                .args(stale)
                .stderr(Stdio::null())
                .status();
        }
        sh(&["ip", "netns", "add", &ns]);
        let link = Link {
            ns: ns.clone(),
            host_end: host_end.clone(),
            sink_addr: sink_addr.clone(),
        };
        sh(&[
            "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "sink0", "netns", &ns,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host_addr}/24"),
            "dev",
            &host_end,
        ]);
        sh(&["ip", "link", "set", &host_end, "up"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{sink_addr}/24"),
            "dev",
            "sink0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "sink0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        link
    }

    /// Starts `rk probe net-sink` in the sink namespace (stderr piped: it says when
    /// the first byte arrived).
    fn sink(&self, port: u16, seconds: f64, bucket_ms: u64) -> Child {
        Command::new("ip")
            .args([
                "netns", "exec", &self.ns, RK, "probe", "net-sink", "--listen",
            ])
            .arg(format!("{}:{port}", self.sink_addr))
            .args(["--seconds", &seconds.to_string()])
            .args(["--bucket-ms", &bucket_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the sink")
    }

    fn target(&self, port: u16) -> String {
        format!("{}:{port}", self.sink_addr)
    }

    /// What rk left on the interface: (root qdisc line, classes, filters).
    fn leftovers(&self) -> (String, String, String) {
        (
            sh(&["tc", "qdisc", "show", "dev", &self.host_end, "root"]),
            sh(&["tc", "class", "show", "dev", &self.host_end]),
            sh(&["tc", "filter", "show", "dev", &self.host_end]),
        )
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_end])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Destroys every reservation of the kernel's base on drop, so that a failing test
/// leaves nothing behind either.
struct Cleanup(ResourceKernel);

impl Drop for Cleanup {
    fn drop(&mut self) {
        destroy_all(&self.0);
    }
}

/// Waits for the sink to report its first byte; returns that moment.
fn first_byte(sink: &mut Child) -> Instant {
    use std::io::BufRead;
    let stderr = sink.stderr.take().expect("piped stderr");
    let mut line = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut line)
        .expect("sink stderr");
    assert!(line.contains("first byte"), "sink said {line:?}");
    Instant::now()
}

fn kernel(test: &str) -> ResourceKernel {
    let base = format!("rk-test/{test}-{}", std::process::id());
    ResourceKernel::with_config(KernelConfig::new(base)).expect("resource kernel")
}

fn destroy_all(k: &ResourceKernel) {
    for info in k.list().unwrap_or_default() {
        if let Ok(r) = k.open(&info.record.name) {
            let _ = r.destroy();
        }
    }
}

fn net_spec(interface: &str, mbit: u64) -> ReservationSpec {
    ReservationSpec {
        net: vec![NetLimit {
            interface: interface.into(),
            egress_bps: mbit * 1_000_000,
        }],
        ..Default::default()
    }
}

/// Starts `rk probe net-send` inside the reservation.
fn sender(r: &Reservation, to: &str, seconds: f64) -> Child {
    let mut cmd = Command::new(RK);
    cmd.args(["probe", "net-send", "--to", to, "--seconds"])
        .arg(seconds.to_string())
        .stdout(Stdio::piped());
    r.prepare_command(&mut cmd, &SpawnOptions::default())
        .expect("prepare");
    cmd.spawn().expect("start the sender")
}

fn report<T: serde::de::DeserializeOwned>(child: Child, what: &str) -> T {
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{what} failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what} printed {text:?}: {e}"))
}

/// Mbit/s on the link for `bytes` of TCP payload received in `seconds`. A class's rate
/// is of bytes on the interface, headers included (HTB counts every segment of a GSO
/// packet with its headers): each 1448-byte segment of payload (a 1500-byte MTU less
/// 20 bytes of IP and 32 of TCP with timestamps) is 1514 bytes on the veth.
fn mbit(bytes: u64, seconds: f64) -> f64 {
    goodput(bytes, seconds) * WIRE_PER_PAYLOAD
}

const WIRE_PER_PAYLOAD: f64 = 1514.0 / 1448.0;

/// Mbit/s of payload.
fn goodput(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds / 1e6
}

/// Mbit/s over buckets `from..to` (bucket indices) of a sink report.
fn window(r: &NetSinkReport, from: usize, to: usize) -> f64 {
    let bytes: u64 = r.buckets[from..to].iter().sum();
    mbit(bytes, (to - from) as f64 * r.bucket_ms as f64 / 1000.0)
}

fn rk_tables() -> Vec<String> {
    rk::net::tables().expect("nft list tables")
}

/// Every rk nftables table belongs to a live reservation (other tests run alongside).
fn assert_no_orphan_table(k: &ResourceKernel) {
    let held: Vec<String> = k
        .list_all()
        .unwrap()
        .iter()
        .filter_map(|i| i.record.net_minor.map(rk::net::table_name))
        .collect();
    for t in rk_tables() {
        assert!(held.contains(&t), "nftables table {t} was left behind");
    }
}

#[test]
fn lifecycle_net_bad_input_creates_nothing() {
    require_root_and_tools();
    let link = Link::new("x");
    let k = kernel("net-bad");
    let _cleanup = Cleanup(k.clone());
    let bad: Vec<(ReservationSpec, &str)> = vec![
        (net_spec("rk-no-such0", 10), "does not exist"),
        (net_spec("bad\"name", 10), "not a network interface name"),
        (
            net_spec(&"x".repeat(16), 10),
            "not a network interface name",
        ),
        (
            ReservationSpec {
                net: vec![NetLimit {
                    interface: link.host_end.clone(),
                    egress_bps: 10,
                }],
                ..Default::default()
            },
            "outside",
        ),
        (
            ReservationSpec {
                net: vec![
                    NetLimit {
                        interface: link.host_end.clone(),
                        egress_bps: 1_000_000,
                    },
                    NetLimit {
                        interface: link.host_end.clone(),
                        egress_bps: 2_000_000,
                    },
                ],
                ..Default::default()
            },
            "two egress limits",
        ),
    ];
    for (spec, why) in bad {
        let err = k.create("bad", &spec).expect_err("refused");
        assert!(
            matches!(err, RkError::InvalidSpec(_)) && err.to_string().contains(why),
            "{spec:?}: {err}"
        );
        assert!(k.list().unwrap().is_empty(), "a record was left");
    }
    assert_no_orphan_table(&k);
    let (qdisc, classes, _) = link.leftovers();
    assert!(!qdisc.contains("htb"), "a qdisc was left: {qdisc}");
    assert!(classes.is_empty(), "classes were left: {classes}");

    // A root qdisc someone else configured is never replaced; nothing is left.
    sh(&[
        "tc",
        "qdisc",
        "add",
        "dev",
        &link.host_end,
        "root",
        "handle",
        "1:",
        "htb",
    ]);
    let err = k
        .create("foreign", &net_spec(&link.host_end, 10))
        .expect_err("refused");
    assert!(
        matches!(err, RkError::Net { .. }) && err.to_string().contains("someone else"),
        "{err}"
    );
    assert!(k.list().unwrap().is_empty(), "a record was left");
    assert_no_orphan_table(&k);
    let (qdisc, _, _) = link.leftovers();
    assert!(
        qdisc.contains("htb 1:"),
        "the foreign qdisc was touched: {qdisc}"
    );
    let cgroup = k
        .host()
        .controllers
        .get("memory")
        .map(|m| m.join(k.base()).join("foreign"));
    assert!(
        cgroup.is_none_or(|c| !c.exists()),
        "a cgroup was left after the refusal"
    );
    destroy_all(&k);
}

#[test]
fn lifecycle_net_class_resizes_and_goes_with_the_reservation() {
    require_root_and_tools();
    let link = Link::new("y");
    let k = kernel("net-life");
    let _cleanup = Cleanup(k.clone());
    let mut r = k
        .create("shaped", &net_spec(&link.host_end, 10))
        .expect("create");
    let minor = r.record().net_minor.expect("a class was allocated");
    let (qdisc, classes, _) = link.leftovers();
    assert!(qdisc.contains("htb 4b52:"), "{qdisc}");
    assert!(classes.contains("rate 10Mbit ceil 10Mbit"), "{classes}");
    assert!(rk_tables().contains(&rk::net::table_name(minor)));
    r.update(&net_spec(&link.host_end, 20)).expect("resize");
    let (_, classes, _) = link.leftovers();
    assert!(classes.contains("rate 20Mbit ceil 20Mbit"), "{classes}");
    // Dropping the limit removes the class, the qdisc and the rules at once.
    r.update(&ReservationSpec::default()).expect("unlimit");
    assert_eq!(r.record().net_minor, None);
    let (qdisc, classes, _) = link.leftovers();
    assert!(
        !qdisc.contains("htb") && classes.is_empty(),
        "{qdisc} {classes}"
    );
    r.update(&net_spec(&link.host_end, 5)).expect("limit again");
    let minor = r.record().net_minor.expect("a class again");
    r.destroy().expect("destroy");
    let (qdisc, classes, filters) = link.leftovers();
    assert!(!qdisc.contains("htb"), "{qdisc}");
    assert!(
        classes.is_empty() && filters.is_empty(),
        "{classes} {filters}"
    );
    assert!(!rk_tables().contains(&rk::net::table_name(minor)));
}

#[test]
fn enforcement_net_two_reservations_measure_their_rates_and_resize_live() {
    let host = require_root_and_tools();
    let link = Link::new("a");
    let k = kernel("net-rates");
    let _cleanup = Cleanup(k.clone());
    if !host.mode.is_v2() {
        assert!(
            k.host().controllers.contains_key("net_cls")
                || std::path::Path::new("/sys/fs/cgroup/net_cls/net_cls.classid").exists(),
            "net_cls is neither mounted nor mountable on this v1 host"
        );
    }
    // The machine must be able to send well above 50 Mbit/s unshaped, or a shortfall
    // would be the sender's (a loaded or emulated CPU), not the shaper's.
    let sink = link.sink(5000, 3.0, 100);
    std::thread::sleep(Duration::from_millis(300));
    let free = Command::new(RK)
        .args([
            "probe",
            "net-send",
            "--to",
            &link.target(5000),
            "--seconds",
            "4",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshaped sender");
    let unshaped: NetSinkReport = report(sink, "unshaped sink");
    let _: NetSendReport = report(free, "unshaped sender");
    let capacity = mbit(unshaped.bytes, unshaped.seconds);
    println!("unshaped: {capacity:.1} Mbit/s on the link");
    assert!(
        capacity > 75.0,
        "PRECONDITION: this machine sends only {capacity:.1} Mbit/s unshaped over the veth; \
         a 50 Mbit/s reservation cannot be measured (CPU starved?)"
    );
    let slow = k
        .create("slow", &net_spec(&link.host_end, 10))
        .expect("10 Mbit/s reservation");
    let fast = k
        .create("fast", &net_spec(&link.host_end, 50))
        .expect("50 Mbit/s reservation");
    let seconds = 10.0;
    let sinks = [link.sink(5001, seconds, 100), link.sink(5002, seconds, 100)];
    std::thread::sleep(Duration::from_millis(300));
    let senders = [
        sender(&slow, &link.target(5001), seconds + 2.0),
        sender(&fast, &link.target(5002), seconds + 2.0),
    ];
    let [sink_slow, sink_fast] = sinks;
    let slow_report: NetSinkReport = report(sink_slow, "10 Mbit/s sink");
    let fast_report: NetSinkReport = report(sink_fast, "50 Mbit/s sink");
    for s in senders {
        let _: NetSendReport = report(s, "sender");
    }
    let slow_rate = mbit(slow_report.bytes, slow_report.seconds);
    let fast_rate = mbit(fast_report.bytes, fast_report.seconds);
    println!(
        "reserved 10 Mbit/s: measured {slow_rate:.2} on the link ({:.2} goodput); reserved 50 Mbit/s: measured {fast_rate:.2} ({:.2} goodput), over {seconds} s",
        goodput(slow_report.bytes, slow_report.seconds),
        goodput(fast_report.bytes, fast_report.seconds)
    );
    assert!(
        (slow_rate - 10.0).abs() <= 1.0,
        "10 Mbit/s reservation measured {slow_rate:.2}"
    );
    assert!(
        (fast_rate - 50.0).abs() <= 5.0,
        "50 Mbit/s reservation measured {fast_rate:.2}"
    );

    // A live change from 10 to 20 Mbit/s, three seconds into an eight-second run
    // (timed from the sink's first byte, the origin of its buckets).
    let mut slow = slow;
    let mut sink = link.sink(5003, 8.0, 100);
    std::thread::sleep(Duration::from_millis(300));
    let send = sender(&slow, &link.target(5003), 10.0);
    let origin = first_byte(&mut sink);
    std::thread::sleep(Duration::from_secs(3));
    let asked = origin.elapsed();
    slow.update(&net_spec(&link.host_end, 20)).expect("resize");
    let done = origin.elapsed();
    println!("resize asked at {asked:?}, returned at {done:?}");
    let resized: NetSinkReport = report(sink, "resized sink");
    let _: NetSendReport = report(send, "resized sender");
    let bucket = |d: Duration| (d.as_millis() / u128::from(resized.bucket_ms)) as usize;
    let before = window(&resized, 10, bucket(asked));
    let first_second = window(&resized, bucket(done) + 1, bucket(done) + 11);
    let after = window(&resized, bucket(done) + 11, resized.buckets.len());
    println!(
        "before the change {before:.2} Mbit/s; in the second after it returned {first_second:.2}; from then on {after:.2}"
    );
    assert!((before - 10.0).abs() <= 1.0, "before: {before:.2}");
    assert!(
        (after - 20.0).abs() <= 2.0,
        "20 Mbit/s not in force 1 s after the change: {after:.2}"
    );

    let minors: Vec<u16> = [&slow, &fast]
        .iter()
        .filter_map(|r| r.record().net_minor)
        .collect();
    slow.destroy().expect("destroy");
    fast.destroy().expect("destroy");
    let (qdisc, classes, filters) = link.leftovers();
    assert!(!qdisc.contains("htb"), "qdisc left: {qdisc}");
    assert!(classes.trim().is_empty(), "classes left: {classes}");
    assert!(filters.trim().is_empty(), "filters left: {filters}");
    let left = rk_tables();
    for m in minors {
        assert!(
            !left.contains(&rk::net::table_name(m)),
            "nft table left: {left:?}"
        );
    }
    assert!(k.list().unwrap().is_empty());
    destroy_all(&k);
}

/// A loop device over a sparse file in the test's own temporary directory.
struct Loop {
    device: String,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn new() -> Loop {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("disk.img");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(64 << 20))
            .expect("backing file");
        let device = sh(&["losetup", "--find", "--show", &file.display().to_string()])
            .trim()
            .to_string();
        Loop { device, _dir: dir }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

#[test]
fn enforcement_io_direct_writer_reserved_5_mb_per_s() {
    require_root_and_tools();
    let dev = Loop::new();
    let k = kernel("io-rate");
    let _cleanup = Cleanup(k.clone());
    let spec = ReservationSpec {
        io: vec![IoLimit {
            device: dev.device.clone().into(),
            write_bps: Some(5_000_000),
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = k.create("writer", &spec).expect("create");
    let writer = || {
        let mut cmd = Command::new(RK);
        cmd.args(["probe", "direct-write", "--path", &dev.device])
            .args(["--bytes", "25M"])
            .stdout(Stdio::piped());
        cmd
    };
    let mut cmd = writer();
    r.prepare_command(&mut cmd, &SpawnOptions::default())
        .expect("prepare");
    let w: DirectWriteReport = report(cmd.spawn().expect("writer"), "direct writer");
    let rate = w.bytes_per_sec / 1e6;
    println!(
        "reserved 5 MB/s: wrote {} bytes in {:.2} s = {rate:.2} MB/s",
        w.bytes, w.seconds
    );
    assert!(
        (rate - 5.0).abs() <= 0.75,
        "5 MB/s reservation measured {rate:.2} MB/s"
    );
    // Unreserved, the same writes run far faster: the limit, not the device, bound them.
    let free = writer().spawn().expect("free writer");
    let free: DirectWriteReport = report(free, "unreserved writer");
    println!("unreserved: {:.2} MB/s", free.bytes_per_sec / 1e6);
    assert!(
        free.bytes_per_sec > 2.0 * w.bytes_per_sec,
        "the device itself is too slow to show the limit"
    );
    r.destroy().expect("destroy");
}
