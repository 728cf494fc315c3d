//! `rk`: run commands inside reservations and manage the host's reservations.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rk::spec::{parse_duration_ns, parse_size};
use rk::{
    BandwidthSpec, CpuList, CpuReservation, DeadlineSpec, IoLimit, KernelConfig, NetLimit,
    ReservationSpec, ResourceKernel, SpawnOptions, UnixIdentity,
};
use serde::Serialize;

const DEFAULT_EXEC_BASE: &str = "rk/exec";

#[derive(Parser, Debug)]
#[command(
    name = "rk",
    version,
    about = "Resource kernel: run commands inside enforced reservations (cgroups v1/v2, SCHED_DEADLINE)",
    long_about = "Resource kernel: run commands inside reservations the kernel enforces.\n\n\
        CPU bandwidth (cgroup cpu.max / CFS quota), real-time CPU (SCHED_DEADLINE in an exclusive \
        cpuset partition, booked in a per-host ledger that mirrors the kernel's admission), \
        memory limit and guarantee, pids and block I/O limits, and egress network bandwidth (an HTB \
        class per reservation, its traffic classified by cgroup with nftables; needs tc and nft). \
        Works on unified cgroup v2 hosts and on legacy/hybrid v1 hosts. Needs CAP_SYS_ADMIN (and \
        CAP_SYS_NICE for --deadline)."
)]
struct Cli {
    /// Directory holding reservation metadata and the host lock.
    #[arg(long, global = true, env = "RK_STATE_DIR", default_value = rk::owner::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Log more (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a command inside a fresh reservation, print its usage when it ends, remove
    /// the reservation, and exit with the command's status (128+N if killed by signal N).
    Exec(Box<ExecArgs>),
    /// List reservations (every base unless --base is given).
    Ls {
        /// Only this base.
        #[arg(long)]
        base: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show one reservation: spec, owner, cgroups, processes and usage.
    Show {
        /// NAME under --base, or BASE/NAME.
        name: String,
        #[arg(long, default_value = DEFAULT_EXEC_BASE)]
        base: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Remove reservations whose owner process is dead (every base unless --base).
    Clean {
        #[arg(long)]
        base: Option<String>,
    },
    /// Show what was detected about this host and the deadline ledger.
    Host {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Workloads that measure enforcement from inside a reservation (JSON on stdout).
    #[command(subcommand)]
    Probe(Probe),
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// CPU bandwidth in CPUs (e.g. 0.3 = 30 % of one CPU; 1.5 = one and a half).
    #[arg(long, conflicts_with = "deadline", value_parser = parse_fraction)]
    cpu: Option<f64>,
    /// Bandwidth enforcement period (e.g. 100ms).
    #[arg(long, requires = "cpu", value_parser = parse_period_us)]
    cpu_period: Option<u64>,
    /// Real-time: SCHED_DEADLINE RUNTIME/PERIOD or RUNTIME/DEADLINE/PERIOD (e.g. 2ms/10ms).
    #[arg(long, value_parser = parse_deadline)]
    deadline: Option<DeadlineSpec>,
    /// Hard memory limit (e.g. 256M).
    #[arg(long, value_parser = parse_bytes)]
    mem_max: Option<u64>,
    /// Guaranteed memory (v1: soft limit), e.g. 64M.
    #[arg(long, value_parser = parse_bytes)]
    mem_min: Option<u64>,
    /// Maximum number of tasks.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pids: Option<u64>,
    /// CPUs (e.g. 0-1,3). With --deadline: the real-time partition's CPUs.
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// Block I/O limit: DEVICE:KEY=N[,KEY=N...] with keys rbps, wbps, riops, wiops
    /// (e.g. /dev/vda:wbps=10M). Repeatable.
    #[arg(long = "io", value_parser = parse_io)]
    io: Vec<IoLimit>,
    /// Egress bandwidth limit: IFACE:RATE in bit/s with k, M or G (e.g. eth0:10M).
    /// Repeatable, one per interface.
    #[arg(long = "net", value_parser = parse_net)]
    net: Vec<NetLimit>,
    /// Run the command as this unix account.
    #[arg(long)]
    user: Option<String>,
    /// Base for the reservation.
    #[arg(long, default_value = DEFAULT_EXEC_BASE)]
    base: String,
    /// Reservation name (default exec-PID).
    #[arg(long)]
    name: Option<String>,
    /// Usage report format (text on stderr, json as the last line of stdout).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Probe {
    /// Spin on the CPU and report the share of one CPU obtained.
    Spin {
        /// Seconds to spin.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Run periodic jobs under this task's SCHED_DEADLINE parameters and count misses.
    Deadline {
        /// Number of jobs (one per period).
        #[arg(long, default_value_t = 1000)]
        jobs: u64,
        /// CPU time each job burns (e.g. 1ms).
        #[arg(long, default_value = "1ms", value_parser = parse_duration)]
        work: Duration,
    },
    /// Allocate and touch memory, one MiB at a time.
    Alloc {
        /// MiB to allocate.
        #[arg(long)]
        mib: u64,
    },
    /// Accept one TCP connection and count the bytes that arrive, per bucket of time.
    NetSink {
        /// Address to listen on, e.g. 10.0.0.2:5001.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Seconds to measure from the first byte.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Bucket length in milliseconds.
        #[arg(long, default_value_t = 100)]
        bucket_ms: u64,
    },
    /// Send over TCP as fast as the connection takes it.
    NetSend {
        /// Where a `rk probe net-sink` listens.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Seconds to send.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Write to a device or file with O_DIRECT|O_SYNC and report the rate.
    DirectWrite {
        /// The block device (or file) to write; its contents are overwritten.
        #[arg(long)]
        path: PathBuf,
        /// How much to write (e.g. 20M).
        #[arg(long, value_parser = parse_bytes)]
        bytes: u64,
    },
}

fn parse_net(s: &str) -> Result<NetLimit, String> {
    s.parse().map_err(|e: rk::RkError| e.to_string())
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !f.is_finite() || f <= 0.0 {
        return Err(format!("CPU fraction must be > 0, got {s}"));
    }
    Ok(f)
}

fn parse_period_us(s: &str) -> Result<u64, String> {
    parse_duration_ns(s)
        .map(|ns| ns / 1000)
        .map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_duration_ns(s)
        .map(Duration::from_nanos)
        .map_err(|e| e.to_string())
}

fn parse_deadline(s: &str) -> Result<DeadlineSpec, String> {
    s.parse().map_err(|e: rk::RkError| e.to_string())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let l: CpuList = s
        .parse()
        .map_err(|e: rk::cpulist::CpuListError| e.to_string())?;
    if l.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(l)
}

fn parse_io(s: &str) -> Result<IoLimit, String> {
    let (dev, rules) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected DEVICE:KEY=N[,KEY=N]"))?;
    let mut limit = IoLimit {
        device: PathBuf::from(dev),
        ..Default::default()
    };
    for rule in rules.split(',') {
        let (k, v) = rule
            .split_once('=')
            .ok_or_else(|| format!("{rule:?}: expected KEY=N"))?;
        let n = parse_size(v).map_err(|e| e.to_string())?;
        match k {
            "rbps" => limit.read_bps = Some(n),
            "wbps" => limit.write_bps = Some(n),
            "riops" => limit.read_iops = Some(n),
            "wiops" => limit.write_iops = Some(n),
            _ => return Err(format!("unknown io key {k:?} (rbps, wbps, riops, wiops)")),
        }
    }
    Ok(limit)
}

static CHILD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn install_forwarding() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler only reads an atomic and calls kill.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

#[derive(Serialize)]
struct ExecReport {
    reservation: String,
    cgroups: Vec<PathBuf>,
    spec: ReservationSpec,
    exit_code: Option<i32>,
    signal: Option<i32>,
    wall_s: f64,
    cpu_share: f64,
    usage: rk::Usage,
}

fn exec(cli: &Cli, args: &ExecArgs) -> Result<ExitCode> {
    let spec = ReservationSpec {
        cpu: match (args.cpu, &args.deadline) {
            (Some(f), None) => Some(CpuReservation::Bandwidth(BandwidthSpec {
                fraction: f,
                period_us: args
                    .cpu_period
                    .unwrap_or(rk::spec::DEFAULT_BANDWIDTH_PERIOD_US),
            })),
            (None, Some(d)) => Some(CpuReservation::RealTime(*d)),
            (None, None) => None,
            (Some(_), Some(_)) => bail!("--cpu and --deadline exclude each other"),
        },
        cpus: args.cpus.clone(),
        memory_max: args.mem_max,
        memory_min: args.mem_min,
        pids_max: args.pids,
        io: args.io.clone(),
        net: args.net.clone(),
    };
    spec.validate().context("invalid reservation")?;
    let identity = args
        .user
        .as_deref()
        .map(UnixIdentity::from_user_name)
        .transpose()
        .context("resolving --user")?;
    let mut config = KernelConfig::new(&args.base);
    config.state_dir = cli.state_dir.clone();
    let kernel = ResourceKernel::with_config(config).context("opening the resource kernel")?;
    kernel
        .check_spec(&spec)
        .context("the reservation cannot be made on this host")?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("exec-{}", std::process::id()));
    let reservation = kernel
        .create(&name, &spec)
        .with_context(|| format!("creating reservation {}/{name}", args.base))?;
    let run = || -> Result<(std::process::ExitStatus, Duration, rk::Usage)> {
        let mut cmd = Command::new(&args.command[0]);
        cmd.args(&args.command[1..]);
        reservation
            .prepare_command(
                &mut cmd,
                &SpawnOptions {
                    identity: identity.clone(),
                    ..Default::default()
                },
            )
            .context("preparing the command")?;
        install_forwarding();
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {:?} inside the reservation", args.command[0]))?;
        CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
        let status = child.wait().context("waiting for the command")?;
        CHILD_PID.store(0, Ordering::SeqCst);
        let wall = start.elapsed();
        let usage = reservation.usage().context("reading usage")?;
        Ok((status, wall, usage))
    };
    let outcome = run();
    let full_name = format!("{}/{}", reservation.base(), reservation.name());
    let cgroups = reservation.cgroup_paths().to_vec();
    reservation
        .destroy()
        .with_context(|| format!("removing reservation {full_name}"))?;
    let (status, wall, usage) = outcome?;
    let report = ExecReport {
        reservation: full_name,
        cgroups,
        spec,
        exit_code: status.code(),
        signal: status.signal(),
        wall_s: wall.as_secs_f64(),
        cpu_share: usage.cpu_time_us as f64 / wall.as_micros().max(1) as f64,
        usage,
    };
    match args.output {
        Output::Json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &report)?;
            writeln!(out)?;
        }
        Output::Text => eprintln!("{}", exec_text(&report)),
    }
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c as u8),
        (None, Some(s)) => ExitCode::from(128u8.wrapping_add(s as u8)),
        _ => ExitCode::FAILURE,
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn exec_text(r: &ExecReport) -> String {
    let status = match (r.exit_code, r.signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    };
    let u = &r.usage;
    format!(
        "rk: {} {status} after {:.2} s\n\
         rk:   cpu {:.3} s ({:.1} % of one CPU), throttled in {}/{} periods ({:.3} s)\n\
         rk:   memory peak {:.1} MiB, oom kills {}",
        r.reservation,
        r.wall_s,
        u.cpu_time_us as f64 / 1e6,
        r.cpu_share * 100.0,
        u.nr_throttled,
        u.nr_periods,
        u.throttled_time_us as f64 / 1e6,
        mib(u.memory_peak),
        u.oom_kills,
    )
}

fn kernel_for(cli: &Cli, base: &str) -> Result<ResourceKernel> {
    let mut config = KernelConfig::new(base);
    config.state_dir = cli.state_dir.clone();
    ResourceKernel::with_config(config).context("opening the resource kernel")
}

fn describe_cpu(spec: &ReservationSpec) -> String {
    match &spec.cpu {
        Some(CpuReservation::Bandwidth(b)) => format!("bandwidth {:.3} CPU", b.fraction),
        Some(CpuReservation::RealTime(d)) => format!(
            "deadline {}/{}/{} µs ×{}",
            d.runtime_ns / 1000,
            d.deadline_ns / 1000,
            d.period_ns / 1000,
            d.tasks
        ),
        None => "cpu unreserved".into(),
    }
}

fn ls(cli: &Cli, base: Option<&str>, output: Output) -> Result<()> {
    let kernel = kernel_for(cli, base.unwrap_or(DEFAULT_EXEC_BASE))?;
    let infos = if base.is_some() {
        kernel.list()?
    } else {
        kernel.list_all()?
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    if infos.is_empty() {
        println!("no reservations");
        return Ok(());
    }
    println!(
        "{:<40} {:<28} {:>8} {:<6} STATE",
        "RESERVATION", "CPU", "OWNER", "ALIVE"
    );
    for i in infos {
        let r = &i.record;
        println!(
            "{:<40} {:<28} {:>8} {:<6} {:?}",
            format!("{}/{}", r.base, r.name),
            describe_cpu(&r.spec),
            r.owner.pid,
            if i.owner_alive { "yes" } else { "no" },
            r.state
        );
    }
    Ok(())
}

fn show(cli: &Cli, name: &str, base: &str, output: Output) -> Result<()> {
    let (base, name) = match name.rsplit_once('/') {
        Some((b, n)) => (b, n),
        None => (base, name),
    };
    let kernel = kernel_for(cli, base)?;
    let r = kernel.open(name)?;
    let pids = r.pids().unwrap_or_default();
    let usage = r.usage().ok();
    if output == Output::Json {
        #[derive(Serialize)]
        struct Show<'a> {
            record: &'a rk::ReservationRecord,
            owner_alive: bool,
            pids: &'a [i32],
            usage: Option<rk::Usage>,
        }
        let s = Show {
            record: r.record(),
            owner_alive: r.owner().is_alive(),
            pids: &pids,
            usage,
        };
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let rec = r.record();
    println!("reservation  {}/{}", rec.base, rec.name);
    println!("state        {:?} ({:?} backend)", rec.state, rec.version);
    println!(
        "owner        pid {} ({})",
        rec.owner.pid,
        if rec.owner.is_alive() {
            "alive"
        } else {
            "dead"
        }
    );
    println!("cpu          {}", describe_cpu(&rec.spec));
    if let Some(c) = &rec.spec.cpus {
        println!("cpus         {c}");
    }
    if let Some(d) = &rec.deadline_domain {
        println!("rt partition CPUs {d}");
    }
    println!(
        "memory       max {} / min {}",
        rec.spec
            .memory_max
            .map_or("-".into(), |m| format!("{:.1} MiB", mib(m))),
        rec.spec
            .memory_min
            .map_or("-".into(), |m| format!("{:.1} MiB", mib(m)))
    );
    println!(
        "pids max     {}",
        rec.spec.pids_max.map_or("-".into(), |p| p.to_string())
    );
    for d in &rec.cgroup_dirs {
        println!("cgroup       {}", d.display());
    }
    println!("processes    {pids:?}");
    if let Some(u) = usage {
        println!(
            "usage        cpu {:.3} s, throttled {}/{} periods, memory {:.1} MiB (peak {:.1}), oom kills {}, tasks {}",
            u.cpu_time_us as f64 / 1e6,
            u.nr_throttled,
            u.nr_periods,
            mib(u.memory_current),
            mib(u.memory_peak),
            u.oom_kills,
            u.tasks_current
        );
    }
    Ok(())
}

fn clean(cli: &Cli, base: Option<&str>) -> Result<bool> {
    let kernel = kernel_for(cli, base.unwrap_or(DEFAULT_EXEC_BASE))?;
    let cleaned = kernel.clean_orphans(base.is_none())?;
    let mut ok = true;
    if cleaned.is_empty() {
        println!("nothing to clean");
    }
    for c in cleaned {
        match &c.error {
            None => println!("removed {} (owner {} dead)", c.reservation, c.owner_pid),
            Some(e) => {
                ok = false;
                println!("FAILED to remove {}: {e}", c.reservation)
            }
        }
    }
    Ok(ok)
}

fn host(cli: &Cli, output: Output) -> Result<()> {
    let kernel = kernel_for(cli, DEFAULT_EXEC_BASE)?;
    let h = kernel.host();
    let ledger = kernel.ledger()?;
    if output == Output::Json {
        #[derive(Serialize)]
        struct HostOut<'a> {
            host: &'a rk::Host,
            deadline_bound: f64,
            ledger: &'a rk::DeadlineLedger,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&HostOut {
                host: h,
                deadline_bound: h.deadline_bound(),
                ledger: &ledger
            })?
        );
        return Ok(());
    }
    println!("cgroups      {}", h.mode);
    println!(
        "controllers  {}",
        h.controllers.keys().cloned().collect::<Vec<_>>().join(" ")
    );
    println!(
        "capabilities CAP_SYS_ADMIN={} CAP_SYS_NICE={} CAP_SETUID/GID={} CAP_KILL={}",
        h.capabilities.sys_admin,
        h.capabilities.sys_nice,
        h.capabilities.set_ids,
        h.capabilities.kill
    );
    println!(
        "cpus         {} online ({})",
        h.online_cpus.len(),
        h.online_cpus
    );
    println!("kernel       {}", h.kernel_release);
    println!(
        "deadline     sched_rt_runtime_us {} / sched_rt_period_us {}; servers {}; host bound {:.4} CPU",
        h.rt_runtime_us,
        h.rt_period_us,
        h.deadline_server_source,
        h.deadline_bound()
    );
    for d in ledger.summary() {
        println!(
            "ledger       CPUs {}: {:.4} of {:.4} CPU booked",
            d.cpus, d.booked, d.capacity
        );
    }
    Ok(())
}

fn probe(p: &Probe) -> Result<()> {
    let json = match p {
        Probe::Spin { seconds } => {
            serde_json::to_string(&rk::probe::spin(Duration::from_secs_f64(*seconds)))?
        }
        Probe::Deadline { jobs, work } => {
            let r = rk::probe::deadline_job(*jobs, *work);
            if !r.sched_deadline {
                bail!(
                    "this process does not run under SCHED_DEADLINE (start it with rk exec --deadline)"
                );
            }
            serde_json::to_string(&r)?
        }
        Probe::Alloc { mib } => {
            let got = rk::probe::allocate(*mib);
            format!("{{\"allocated_mib\":{got}}}")
        }
        Probe::NetSink {
            listen,
            seconds,
            bucket_ms,
        } => serde_json::to_string(
            &rk::probe::net_sink(*listen, *seconds, *bucket_ms)
                .with_context(|| format!("sink on {listen}"))?,
        )?,
        Probe::NetSend { to, seconds } => serde_json::to_string(
            &rk::probe::net_send(*to, *seconds).with_context(|| format!("sending to {to}"))?,
        )?,
        Probe::DirectWrite { path, bytes } => serde_json::to_string(
            &rk::probe::direct_write(path, *bytes)
                .with_context(|| format!("writing {}", path.display()))?,
        )?,
    };
    println!("{json}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match &cli.command {
        Cmd::Exec(args) => exec(&cli, args),
        Cmd::Ls { base, output } => ls(&cli, base.as_deref(), *output).map(|_| ExitCode::SUCCESS),
        Cmd::Show { name, base, output } => {
            show(&cli, name, base, *output).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Clean { base } => clean(&cli, base.as_deref()).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Cmd::Host { output } => host(&cli, *output).map(|_| ExitCode::SUCCESS),
        Cmd::Probe(p) => probe(p).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rk: error: {e:#}");
            // 125 like env(1)/timeout(1): rk itself failed, not the command.
            ExitCode::from(125)
        }
    }
}
