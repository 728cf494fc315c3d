//! Reservations on the real kernel of this host.
//!
//! These tests need root (CAP_SYS_ADMIN, CAP_SYS_NICE), cgroups and SCHED_DEADLINE;
//! they fail with a message saying what is missing rather than pass vacuously.
//!
//! * `lifecycle_*`: create/spawn/update/freeze/adopt/clean/teardown; quick, safe to run
//!   in parallel (each uses its own base, none touches the real-time partition).
//! * `enforcement_*`: measure enforcement (CPU share, deadline misses, OOM, ledger vs
//!   kernel admission, teardown) and boot the v2 guest; they must run one at a time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rk::deadline::{self, SCHED_DEADLINE, SCHED_FLAG_RESET_ON_FORK, SchedAttr};
use rk::{
    BandwidthSpec, CpuReservation, DeadlineSpec, Host, KernelConfig, Reservation, ReservationSpec,
    ResourceKernel, RkError, SpawnOptions, SpawnScheduling, UnixIdentity,
};

const RK: &str = env!("CARGO_BIN_EXE_rk");

/// Fails the test (with what is missing) unless this process can manage cgroups.
fn require_cgroups() -> Host {
    let host = Host::detect().unwrap_or_else(|e| panic!("PRECONDITION: cannot detect host: {e}"));
    if let Err(e) = host.require_cgroups(host.reservation_controllers()) {
        panic!("PRECONDITION: these tests need root with cgroups: {e}");
    }
    host
}

fn require_deadline() -> Host {
    let host = require_cgroups();
    if let Err(e) = host.require_deadline() {
        panic!("PRECONDITION: this test needs SCHED_DEADLINE: {e}");
    }
    if host.online_cpus.len() < 2 {
        panic!("PRECONDITION: a real-time partition needs at least 2 CPUs");
    }
    host
}

/// A kernel on a base of its own; on drop every reservation left under the base is
/// destroyed, so that a failing test leaves nothing behind either.
struct TestKernel {
    kernel: ResourceKernel,
}

impl TestKernel {
    fn new(test: &str) -> TestKernel {
        let base = format!("rk-test/{test}-{}", std::process::id());
        TestKernel {
            kernel: ResourceKernel::with_config(KernelConfig::new(base)).expect("resource kernel"),
        }
    }
}

impl std::ops::Deref for TestKernel {
    type Target = ResourceKernel;
    fn deref(&self) -> &ResourceKernel {
        &self.kernel
    }
}

impl Drop for TestKernel {
    fn drop(&mut self) {
        for info in self.kernel.list().unwrap_or_default() {
            if let Ok(r) = self.kernel.open(&info.record.name) {
                let _ = r.destroy();
            }
        }
    }
}

/// Kills and reaps a child on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bandwidth(fraction: f64) -> Option<CpuReservation> {
    Some(CpuReservation::Bandwidth(BandwidthSpec::new(fraction)))
}

fn realtime(s: &str, tasks: u32) -> Option<CpuReservation> {
    let mut d: DeadlineSpec = s.parse().unwrap();
    d.tasks = tasks;
    Some(CpuReservation::RealTime(d))
}

fn rt_spec(s: &str) -> ReservationSpec {
    ReservationSpec {
        cpu: realtime(s, 1),
        ..Default::default()
    }
}

fn bw_spec(fraction: f64) -> ReservationSpec {
    ReservationSpec {
        cpu: bandwidth(fraction),
        ..Default::default()
    }
}

fn spawn_in(r: &Reservation, argv: &[&str], opts: &SpawnOptions) -> Reaped {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    r.prepare_command(&mut cmd, opts).expect("prepare command");
    Reaped(cmd.spawn().expect("spawn inside reservation"))
}

fn alive(pid: i32) -> bool {
    // A zombie still has /proc/PID; look at its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit_once(") ").map(|(_, r)| r.chars().next());
            state != Some(Some('Z'))
        })
        .unwrap_or(false)
}

fn status_field(pid: i32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap()
}

fn knob(dirs: &[PathBuf], file: &str) -> String {
    let dir = dirs
        .iter()
        .find(|d| d.join(file).exists())
        .unwrap_or_else(|| panic!("no {file} in {dirs:?}"));
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_string()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn assert_gone(dirs: &[PathBuf]) {
    for d in dirs {
        assert!(!d.exists(), "cgroup {} still exists", d.display());
    }
}

// ---------------------------------------------------------------------------------
// lifecycle

#[test]
fn lifecycle_host_detection_matches_mounts() {
    let host = require_cgroups();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let root_v2 = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup") && l.contains("cgroup2"));
    assert_eq!(host.mode.is_v2(), root_v2, "{:?}", host.mode);
    assert!(host.capabilities.sys_admin && host.capabilities.sys_nice);
    assert!(host.online_cpu_count() >= 1);
    assert!(host.deadline_bound() > 0.0);
    println!(
        "host: {} controllers {:?}, {} CPUs, deadline bound {:.4}",
        host.mode,
        host.controllers.keys().collect::<Vec<_>>(),
        host.online_cpu_count(),
        host.deadline_bound()
    );
}

#[test]
fn lifecycle_create_spawn_update_usage_destroy() {
    require_cgroups();
    let k = TestKernel::new("cycle");
    let spec = ReservationSpec {
        cpu: bandwidth(0.5),
        memory_max: Some(64 << 20),
        memory_min: Some(8 << 20),
        pids_max: Some(32),
        ..Default::default()
    };
    let mut r = k.create("r1", &spec).expect("create");
    let dirs = r.cgroup_paths().to_vec();
    for d in &dirs {
        assert!(d.is_dir(), "{} missing", d.display());
    }
    if k.host().mode.is_v2() {
        assert_eq!(knob(&dirs, "cpu.max"), "50000 100000");
        assert_eq!(knob(&dirs, "cpu.weight"), "50");
        assert_eq!(knob(&dirs, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(knob(&dirs, "memory.min"), (8u64 << 20).to_string());
    } else {
        assert_eq!(knob(&dirs, "cpu.cfs_quota_us"), "50000");
        assert_eq!(knob(&dirs, "cpu.shares"), "512");
        assert_eq!(
            knob(&dirs, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            knob(&dirs, "memory.soft_limit_in_bytes"),
            (8u64 << 20).to_string()
        );
    }
    assert_eq!(knob(&dirs, "pids.max"), "32");

    // Spawn as nobody: joins the cgroups, then drops privileges.
    let child = spawn_in(
        &r,
        &["sleep", "1000"],
        &SpawnOptions {
            identity: Some(UnixIdentity::from_ids(65534, 65534)),
            ..Default::default()
        },
    );
    let pid = child.0.id() as i32;
    assert!(wait_until(Duration::from_secs(5), || r
        .pids()
        .unwrap()
        .contains(&pid)));
    assert!(wait_until(Duration::from_secs(5), || status_field(
        pid, "Uid"
    )
    .starts_with("65534")));
    assert!(status_field(pid, "Gid").starts_with("65534"));
    assert_eq!(status_field(pid, "Groups"), "65534");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&r.placement().path), "{cg}");

    // Grow and shrink in place.
    let grown = ReservationSpec {
        cpu: bandwidth(0.2),
        memory_max: Some(128 << 20),
        pids_max: Some(8),
        ..spec.clone()
    };
    r.update(&grown).expect("update");
    if k.host().mode.is_v2() {
        assert_eq!(knob(&dirs, "cpu.max"), "20000 100000");
        assert_eq!(knob(&dirs, "memory.max"), (128u64 << 20).to_string());
    } else {
        assert_eq!(knob(&dirs, "cpu.cfs_quota_us"), "20000");
        assert_eq!(
            knob(&dirs, "memory.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
    }
    assert_eq!(knob(&dirs, "pids.max"), "8");
    assert_eq!(k.open("r1").unwrap().spec(), &grown);

    let usage = r.usage().expect("usage");
    assert!(usage.tasks_current >= 1, "{usage:?}");
    assert!(usage.memory_current > 0, "{usage:?}");

    r.destroy().expect("destroy");
    assert_gone(&dirs);
    assert!(!alive(pid), "process {pid} survived teardown");
    assert!(k.list().unwrap().is_empty());
    drop(child);
}

#[test]
fn lifecycle_freeze_stops_and_thaw_resumes() {
    require_cgroups();
    let k = TestKernel::new("freeze");
    let r = k.create("spin", &bw_spec(0.5)).unwrap();
    let _child = spawn_in(
        &r,
        &[RK, "probe", "spin", "--seconds", "60"],
        &Default::default(),
    );
    std::thread::sleep(Duration::from_millis(300));
    r.freeze().expect("freeze");
    let a = r.usage().unwrap().cpu_time_us;
    std::thread::sleep(Duration::from_millis(500));
    let b = r.usage().unwrap().cpu_time_us;
    assert!(b - a < 20_000, "frozen reservation used {} µs", b - a);
    r.thaw().expect("thaw");
    std::thread::sleep(Duration::from_millis(500));
    let c = r.usage().unwrap().cpu_time_us;
    assert!(c - b > 50_000, "thawed reservation used only {} µs", c - b);
    r.destroy().unwrap();
}

#[test]
fn lifecycle_destroy_kills_a_forking_tree() {
    require_cgroups();
    let k = TestKernel::new("tree");
    let r = k
        .create(
            "tree",
            &ReservationSpec {
                pids_max: Some(200),
                ..Default::default()
            },
        )
        .unwrap();
    let dirs = r.cgroup_paths().to_vec();
    let child = spawn_in(
        &r,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; \
             while :; do sh -c 'sleep 1000' & sleep 0.05; done",
        ],
        &Default::default(),
    );
    assert!(wait_until(Duration::from_secs(10), || r
        .pids()
        .unwrap()
        .len()
        >= 12));
    let pids = r.pids().unwrap();
    r.destroy().expect("destroy");
    assert_gone(&dirs);
    for p in pids {
        assert!(!alive(p), "pid {p} survived teardown");
    }
    drop(child);
}

#[test]
fn lifecycle_reopen_adopt_and_clean_after_owner_died() {
    require_cgroups();
    let k = TestKernel::new("adopt");
    // An owner that dies without tearing down: `rk exec` killed with SIGKILL.
    let spawn_owner = |name: &str| {
        let child = Command::new(RK)
            .args([
                "exec",
                "--base",
                k.base(),
                "--name",
                name,
                "--cpu",
                "0.1",
                "--",
                "sleep",
                "1000",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Reaped(child);
        assert!(wait_until(Duration::from_secs(10), || k
            .open(name)
            .is_ok_and(|r| !r.pids().unwrap_or_default().is_empty())));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
    };
    spawn_owner("orphan-a");
    spawn_owner("orphan-b");

    let listed = k.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|i| !i.owner_alive && i.cgroups_exist));

    // A restarted owner re-attaches and adopts.
    let reopened = k.open("orphan-a").unwrap();
    assert_eq!(
        reopened.pids().unwrap().len(),
        1,
        "the workload kept running"
    );
    let adopted = k.adopt_orphans().unwrap();
    assert_eq!(adopted.len(), 2);
    let me = std::process::id() as i32;
    assert!(
        k.list()
            .unwrap()
            .iter()
            .all(|i| i.owner_alive && i.record.owner.pid == me)
    );
    // Nothing to clean while the owner lives.
    assert!(k.clean_orphans(false).unwrap().is_empty());

    // Hand orphan-b back to a dead owner and let `rk clean` remove it.
    let b_dirs = k.open("orphan-b").unwrap().cgroup_paths().to_vec();
    let b_pids = k.open("orphan-b").unwrap().pids().unwrap();
    let dead_owner = rk::Owner {
        pid: me,
        start_time: 1,
    };
    let mut rec = k.open("orphan-b").unwrap().record().clone();
    rec.owner = dead_owner;
    rk::owner::StateDir::new(k.state_dir())
        .write_record(&rec)
        .unwrap();
    let out = Command::new(RK)
        .args(["clean", "--base", k.base()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("removed") && text.contains("orphan-b"),
        "{text}"
    );
    assert_gone(&b_dirs);
    for p in b_pids {
        assert!(!alive(p));
    }
    assert_eq!(k.list().unwrap().len(), 1);
    for r in adopted {
        if r.name() == "orphan-a" {
            r.destroy().unwrap();
        }
    }
    assert!(k.list().unwrap().is_empty());
}

#[test]
fn lifecycle_bad_input_creates_nothing() {
    require_cgroups();
    let k = TestKernel::new("bad");
    let bad_specs = [
        ReservationSpec {
            cpu: bandwidth(0.0),
            ..Default::default()
        },
        ReservationSpec {
            cpu: bandwidth(1000.0),
            ..Default::default()
        },
        ReservationSpec {
            memory_min: Some(100 << 20),
            memory_max: Some(10 << 20),
            ..Default::default()
        },
        ReservationSpec {
            cpus: Some("4000".parse().unwrap()),
            ..Default::default()
        },
        ReservationSpec {
            io: vec![rk::IoLimit {
                device: "/dev/null".into(),
                write_bps: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        },
    ];
    for spec in &bad_specs {
        let err = k.create("bad", spec).expect_err("bad spec accepted");
        assert!(matches!(err, RkError::InvalidSpec(_)), "{err}");
    }
    for name in ["", "..", "a/b", "cgroup.procs", "rk.realtime", "x y"] {
        assert!(matches!(
            k.create(name, &ReservationSpec::default()),
            Err(RkError::InvalidName { .. })
        ));
    }
    assert!(k.list().unwrap().is_empty());
    let r = k.create("dup", &ReservationSpec::default()).unwrap();
    assert!(matches!(
        k.create("dup", &ReservationSpec::default()),
        Err(RkError::AlreadyExists { .. })
    ));
    r.destroy().unwrap();

    // The CLI: a bad flag is a usage error and creates nothing.
    for args in [
        vec!["exec", "--cpu", "-1", "--", "true"],
        vec!["exec", "--deadline", "20ms/10ms", "--", "true"],
        vec!["exec", "--mem-max", "12Q", "--", "true"],
        vec![
            "exec",
            "--cpu",
            "0.3",
            "--deadline",
            "2ms/10ms",
            "--",
            "true",
        ],
        vec!["exec", "--cpu", "0.3"],
    ] {
        let out = Command::new(RK)
            .args(&args)
            .args(["--base", k.base()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = Command::new(RK)
        .args(["exec", "--base", k.base(), "--cpus", "4000", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not all online"));
    assert!(k.list().unwrap().is_empty());
}

#[test]
fn lifecycle_rk_exec_reports_usage_and_propagates_status() {
    require_cgroups();
    let base = format!("rk-test/exec-{}", std::process::id());
    let out = Command::new(RK)
        .args([
            "exec",
            "--base",
            &base,
            "--cpu",
            "0.5",
            "--mem-max",
            "64M",
            "--pids",
            "16",
        ])
        .args(["--output", "json", "--", "sh", "-c", "echo hello; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("hello"));
    let report: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(report["exit_code"], 3);
    assert!(report["usage"]["memory_peak"].as_u64().unwrap() > 0);
    assert_eq!(report["spec"]["pids_max"], 16);
    for d in report["cgroups"].as_array().unwrap() {
        assert!(!Path::new(d.as_str().unwrap()).exists());
    }
    // Killed by a signal: 128 + N.
    let out = Command::new(RK)
        .args(["exec", "--base", &base, "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 15));
    assert!(String::from_utf8_lossy(&out.stderr).contains("killed by signal 15"));
}

// ---------------------------------------------------------------------------------
// enforcement (run one at a time)

/// Enforcement tests measure timing and share the real-time partition: they take
/// this host-wide lock so that they run one at a time whatever the test runner does.
fn serial() -> nix::fcntl::Flock<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/rk-enforcement-tests.lock")
        .expect("open the enforcement lock");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("take the enforcement lock")
}

/// Busy loops outside any reservation, one per CPU, optionally pinned.
fn busy_loops(host: &Host, seconds: u64, pin: Option<u32>) -> Vec<Reaped> {
    (0..host.online_cpu_count())
        .map(|_| {
            let mut cmd = Command::new(RK);
            cmd.args(["probe", "spin", "--seconds", &seconds.to_string()])
                .stdout(Stdio::null());
            let child = Reaped(cmd.spawn().unwrap());
            if let Some(cpu) = pin {
                let mut set = nix::sched::CpuSet::new();
                set.set(cpu as usize).unwrap();
                nix::sched::sched_setaffinity(
                    nix::unistd::Pid::from_raw(child.0.id() as i32),
                    &set,
                )
                .unwrap();
            }
            child
        })
        .collect()
}

/// Time the hypervisor stole from `cpu` (the `steal` column of /proc/stat), in ticks.
fn steal_ticks(cpu: u32) -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&format!("cpu{cpu}")))
        .unwrap();
    line.split_whitespace().nth(8).unwrap().parse().unwrap()
}

fn probe_json(child: Reaped) -> (serde_json::Value, std::process::ExitStatus) {
    let mut child = child;
    let mut out = String::new();
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .expect("stdout piped")
        .read_to_string(&mut out)
        .unwrap();
    let status = child.0.wait().unwrap();
    let v = serde_json::from_str(out.lines().last().unwrap_or("null")).unwrap_or_else(|e| {
        panic!("probe printed no JSON ({e}): {out:?}");
    });
    (v, status)
}

fn spawn_piped(r: &Reservation, argv: &[&str], opts: &SpawnOptions) -> Reaped {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    r.prepare_command(&mut cmd, opts).expect("prepare command");
    Reaped(cmd.spawn().expect("spawn inside reservation"))
}

#[test]
fn enforcement_bandwidth_30_percent_under_contention() {
    let _serial = serial();
    let host = require_cgroups();
    let k = TestKernel::new("bw30");
    let _busy = busy_loops(&host, 14, None);
    let r = k.create("bw30", &bw_spec(0.3)).unwrap();
    let before = r.usage().unwrap();
    let start = Instant::now();
    let probe = spawn_piped(
        &r,
        &[RK, "probe", "spin", "--seconds", "10"],
        &Default::default(),
    );
    let (report, status) = probe_json(probe);
    let wall_us = start.elapsed().as_micros() as u64;
    assert!(status.success());
    let share = report["share"].as_f64().unwrap();
    let usage = r.usage().unwrap();
    let cg_share = usage.cpu_share_since(&before, wall_us);
    println!(
        "ENFORCEMENT bandwidth: reservation 0.30 CPU, {} busy loops outside; measured share {share:.3} \
         (cgroup accounting {cg_share:.3}), throttled in {}/{} periods",
        host.online_cpu_count(),
        usage.nr_throttled,
        usage.nr_periods
    );
    assert!((0.22..=0.36).contains(&share), "share {share}");
    assert!(usage.nr_throttled > 0, "never throttled: {usage:?}");
    r.destroy().unwrap();
}

#[test]
fn enforcement_deadline_2ms_every_10ms_meets_every_deadline() {
    let _serial = serial();
    let host = require_deadline();
    let k = TestKernel::new("dl");
    // One deadline task (the probe); busy loops share its CPU without a deadline.
    let r = k.create("dl", &rt_spec("2ms/10ms")).unwrap();
    let rt_cpu = r.record().deadline_domain.clone().unwrap();
    let normal = SpawnOptions {
        scheduling: SpawnScheduling::Normal,
        ..Default::default()
    };
    // A busy loop inside the partition, on the deadline task's CPU ...
    let _inside = spawn_in(&r, &[RK, "probe", "spin", "--seconds", "60"], &normal);
    // ... and busy loops outside on every CPU (pinned to the real-time CPU where the
    // host lets them: v1 exclusivity does not evict the root cpuset's tasks).
    let pin = (!host.mode.is_v2()).then(|| rt_cpu.last().unwrap());
    let _outside = busy_loops(&host, 60, pin);
    let jobs = 3000;
    let steal_before = steal_ticks(rt_cpu.last().unwrap());
    let probe = spawn_piped(
        &r,
        &[
            RK,
            "probe",
            "deadline",
            "--jobs",
            &jobs.to_string(),
            "--work",
            "1ms",
        ],
        &Default::default(),
    );
    let pid = probe.0.id() as i32;
    // The child set its own policy before exec: SCHED_DEADLINE with reset-on-fork.
    assert!(wait_until(
        Duration::from_secs(5),
        || deadline::is_deadline(pid)
    ));
    let attr = deadline::get_attr(pid).unwrap();
    assert_eq!(attr.sched_policy, SCHED_DEADLINE);
    assert_ne!(attr.sched_flags & SCHED_FLAG_RESET_ON_FORK, 0);
    assert_eq!(
        (attr.sched_runtime, attr.sched_period),
        (2_000_000, 10_000_000)
    );
    let (report, status) = probe_json(probe);
    assert!(status.success(), "{report}");
    let misses = report["misses"].as_u64().unwrap();
    let overruns = report["overruns"].as_u64().unwrap();
    println!(
        "ENFORCEMENT deadline: 2ms/10ms on CPU {rt_cpu} with busy loops inside and outside: \
         {misses} misses ({} late, {} skipped periods), {overruns} overruns over {} jobs / {} periods; \
         worst response {:.0} µs, worst release delay {:.0} µs",
        report["late_jobs"],
        report["skipped_periods"],
        report["jobs"],
        report["periods_spanned"],
        report["worst_response_us"].as_f64().unwrap(),
        report["worst_start_delay_us"].as_f64().unwrap()
    );
    assert_eq!(report["jobs"].as_u64(), Some(jobs));
    // These hosts are virtual machines: when the hypervisor does not run the real-time
    // vCPU, periods are lost whatever the guest kernel does, and the steal counter does
    // not always see it (runs here lost 0 to 4 of 3,000 periods with 0–20 ms of steal,
    // each after a release delayed by milliseconds). So the bound is generous: at most
    // 2 % of periods missed or overrun. The exact figures are printed above.
    let stolen_ms = (steal_ticks(rt_cpu.last().unwrap()) - steal_before) * 1000
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as u64;
    println!(
        "ENFORCEMENT deadline: hypervisor steal on CPU {rt_cpu} during the run: {stolen_ms} ms"
    );
    assert!(
        misses * 50 <= jobs,
        "{misses} of {jobs} periods missed ({stolen_ms} ms stolen): {report}"
    );
    assert!(
        overruns * 50 <= jobs,
        "{overruns} of {jobs} jobs overran ({stolen_ms} ms stolen): {report}"
    );
    r.destroy().unwrap();
    assert!(!Path::new("/sys/fs/cgroup/cpuset/rk.realtime").exists());
}

#[test]
fn enforcement_oom_kill_stays_inside_the_reservation() {
    let _serial = serial();
    require_cgroups();
    let k = TestKernel::new("oom");
    let witness = Reaped(Command::new("sleep").arg("600").spawn().unwrap());
    let r = k
        .create(
            "oom",
            &ReservationSpec {
                memory_max: Some(64 << 20),
                ..Default::default()
            },
        )
        .unwrap();
    // A sibling inside that stays small.
    let small = spawn_in(&r, &["sleep", "600"], &Default::default());
    let hog = spawn_piped(
        &r,
        &[RK, "probe", "alloc", "--mib", "1024"],
        &Default::default(),
    );
    let mut hog = hog;
    let status = hog.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    let usage = r.usage().unwrap();
    println!(
        "ENFORCEMENT oom: 64 MiB limit, hog killed by {:?}, oom_kills {}, peak {:.1} MiB; \
         outside process alive: {}",
        status.signal(),
        usage.oom_kills,
        usage.memory_peak as f64 / (1 << 20) as f64,
        alive(witness.0.id() as i32)
    );
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert!(usage.memory_peak <= (64 << 20) + (1 << 20), "{usage:?}");
    assert!(alive(witness.0.id() as i32), "process outside was killed");
    assert!(alive(std::process::id() as i32));
    r.destroy().unwrap();
    drop(small);
}

#[test]
fn enforcement_ledger_refuses_before_kernel_ebusy() {
    let _serial = serial();
    let host = require_deadline();
    let k = TestKernel::new("ledger");
    let a = k.create("a", &rt_spec("6ms/10ms")).unwrap();
    let domain = a.record().deadline_domain.clone().unwrap();
    let _a_task = spawn_in(&a, &["sleep", "600"], &Default::default());
    let ledger = k.ledger().unwrap();
    let capacity = ledger.capacity_bw(&domain);
    println!(
        "ledger: domain CPUs {domain}, capacity {:.4} CPU (rt {:.4}/CPU minus servers {:.4}/CPU), booked {:.4}",
        capacity as f64 / deadline::BW_UNIT as f64,
        ledger.cpu_bw as f64 / deadline::BW_UNIT as f64,
        ledger.server_bw as f64 / deadline::BW_UNIT as f64,
        ledger.booked_bw(&domain, None) as f64 / deadline::BW_UNIT as f64
    );

    // The largest runtime (µs granularity) that still fits, and one µs more.
    let booked = ledger.booked_bw(&domain, None);
    let fits = (1..10_000u64)
        .rev()
        .find(|us| deadline::to_ratio(10_000_000, us * 1000) + booked <= capacity)
        .unwrap();
    let over = format!("{}us/10ms", fits + 1);
    let within = format!("{fits}us/10ms");

    // The ledger refuses; nothing is created.
    let err = k
        .create("b", &rt_spec(&over))
        .expect_err("ledger admitted an over-subscription");
    assert!(
        matches!(err, RkError::DeadlineLedgerRefused { .. }),
        "{err}"
    );
    assert!(k.open("b").is_err());
    println!("ENFORCEMENT ledger: {over} refused: {err}");

    // The kernel agrees: asked directly for the same parameters, it says EBUSY.
    let helper = spawn_in(
        &a,
        &["sleep", "600"],
        &SpawnOptions {
            scheduling: SpawnScheduling::Normal,
            ..Default::default()
        },
    );
    let spec_over: DeadlineSpec = over.parse().unwrap();
    let err = deadline::set_attr(helper.0.id() as i32, &SchedAttr::deadline(&spec_over))
        .expect_err("kernel admitted what the ledger refused");
    assert!(matches!(err, RkError::DeadlineKernelBusy { .. }), "{err}");
    println!("ENFORCEMENT ledger: the kernel, asked directly for {over}: {err}");

    // Exactly at the bound both agree to admit.
    let c = k
        .create("c", &rt_spec(&within))
        .expect("ledger refused what fits");
    let c_task = spawn_in(&c, &["sleep", "600"], &Default::default());
    assert!(wait_until(
        Duration::from_secs(5),
        || deadline::is_deadline(c_task.0.id() as i32)
    ));
    println!(
        "ENFORCEMENT ledger: {within} admitted by ledger and kernel (domain full to {:.6} CPU of {:.6}); host bound {:.4}",
        (booked + deadline::to_ratio(10_000_000, fits * 1000)) as f64 / deadline::BW_UNIT as f64,
        capacity as f64 / deadline::BW_UNIT as f64,
        host.deadline_bound()
    );

    // Live change: growing `c` past the bound is refused, shrinking works.
    let mut c = c;
    let mut grown = c.spec().clone();
    grown.cpu = realtime("5ms/10ms", 1);
    assert!(matches!(
        c.update(&grown),
        Err(RkError::DeadlineLedgerRefused { .. })
    ));
    grown.cpu = realtime("1ms/10ms", 1);
    c.update(&grown).expect("shrink");
    let attr = deadline::get_attr(c_task.0.id() as i32).unwrap();
    assert_eq!(attr.sched_runtime, 1_000_000);
    // A second deadline task exceeds c's booking of one.
    let extra = spawn_in(
        &c,
        &["sleep", "600"],
        &SpawnOptions {
            scheduling: SpawnScheduling::Normal,
            ..Default::default()
        },
    );
    assert!(matches!(
        c.apply_deadline(extra.0.id() as i32),
        Err(RkError::DeadlineTasksExhausted { .. })
    ));
    c.destroy().unwrap();
    a.destroy().unwrap();
    drop((helper, extra, c_task));
}

#[test]
fn enforcement_teardown_leaves_no_cgroup_and_no_process() {
    let _serial = serial();
    let host = require_deadline();
    let k = TestKernel::new("teardown");
    let v1_balance = (!host.mode.is_v2()).then(|| {
        std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.sched_load_balance").unwrap()
    });
    let mut all_dirs = Vec::new();
    let mut all_pids = Vec::new();
    let mut handles = Vec::new();
    for i in 0..6 {
        let spec = ReservationSpec {
            cpu: if i == 0 {
                realtime("1ms/10ms", 1)
            } else {
                bandwidth(0.1)
            },
            cpus: (i == 1).then(|| "0".parse().unwrap()),
            memory_max: Some(32 << 20),
            pids_max: Some(50),
            ..Default::default()
        };
        let r = k.create(&format!("t{i}"), &spec).unwrap();
        let c = spawn_in(
            &r,
            &[
                "sh",
                "-c",
                "sleep 1000 & sleep 1000 & sh -c 'sleep 1000 & wait' & wait",
            ],
            &Default::default(),
        );
        handles.push(c);
        all_dirs.extend(r.cgroup_paths().iter().cloned());
    }
    assert!(wait_until(Duration::from_secs(10), || k
        .list()
        .unwrap()
        .iter()
        .all(
            |i| k.open(&i.record.name).unwrap().pids().unwrap().len() >= 5
        )));
    for i in k.list().unwrap() {
        all_pids.extend(k.open(&i.record.name).unwrap().pids().unwrap());
    }
    let start = Instant::now();
    for i in k.list().unwrap() {
        k.open(&i.record.name).unwrap().destroy().unwrap();
    }
    println!(
        "ENFORCEMENT teardown: 6 reservations, {} processes, {} cgroup directories removed in {:?}",
        all_pids.len(),
        all_dirs.len(),
        start.elapsed()
    );
    assert_gone(&all_dirs);
    for p in &all_pids {
        assert!(!alive(*p), "pid {p} survived");
    }
    assert!(k.list().unwrap().is_empty());
    // Base directories are pruned and the partition is dissolved.
    for d in &all_dirs {
        assert!(
            !d.parent().unwrap().exists(),
            "{} left",
            d.parent().unwrap().display()
        );
    }
    assert!(k.ledger().unwrap().bookings.is_empty());
    if let Some(before) = v1_balance {
        assert!(!Path::new("/sys/fs/cgroup/cpuset/rk.realtime").exists());
        assert_eq!(
            std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.sched_load_balance").unwrap(),
            before
        );
    } else {
        assert!(!Path::new("/sys/fs/cgroup/rk.realtime").exists());
    }
    drop(handles);
}

#[test]
fn enforcement_v2_guest_runs_the_checks_on_a_pure_v2_kernel() {
    let _serial = serial();
    let host = require_cgroups();
    if host.mode.is_v2() {
        // Inside the guest itself: nothing to boot.
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rk-v2-guest.sh");
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .env("RK_BIN", RK)
        .env("RK_TEST_BIN", std::env::current_exe().unwrap())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/rk-v2-guest.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    println!("v2 guest: {:?}", start.elapsed());
    assert!(
        out.status.success(),
        "the pure cgroup v2 guest run failed (qemu-system-x86, busybox-static and cpio must be \
         installable with apt-get): {stderr}"
    );
}
