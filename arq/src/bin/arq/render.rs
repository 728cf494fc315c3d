//! How `arq` prints: readable text, or one JSON document per result for scripts.

use std::io::Write;

use arq::proto::event::Event;
use arq::proto::message::WorldProblem;
use arq::proto::node::NodeView;
use arq::proto::session::{AdmissionOutcome, ProcessView, SessionView};
use arq::proto::world::{ApplicationDef, GroupDef, UserDef};
use serde::Serialize;

pub struct Output {
    json: bool,
}

fn time(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

fn pids(s: &SessionView) -> String {
    let pids: Vec<String> = s
        .processes
        .iter()
        .filter_map(|p| p.pid.map(|pid| pid.to_string()))
        .collect();
    if pids.is_empty() {
        "-".into()
    } else {
        pids.join(",")
    }
}

fn nodes(s: &SessionView) -> String {
    let mut nodes: Vec<&str> = s.processes.iter().map(|p| p.node.as_str()).collect();
    nodes.dedup();
    nodes.join(",")
}

fn process_line(p: &ProcessView) -> String {
    let mut line = format!(
        "  process {} {:<12} node {:<10} pid {:<8} {:?}",
        p.index,
        p.name,
        p.node,
        p.pid.map_or("-".into(), |pid| pid.to_string()),
        p.state
    );
    line.push_str(&format!("\n    reservation  {}", p.reservation));
    if !p.cgroups.is_empty() {
        line.push_str(&format!("\n    cgroup       {}", p.cgroups.join(" ")));
    }
    if let Some(u) = &p.usage {
        line.push_str(&format!(
            "\n    usage        {:.3} cpu, {} MiB (peak {} MiB), throttled {} ms",
            u.cpu_rate,
            u.memory_current_bytes >> 20,
            u.memory_peak_bytes >> 20,
            u.throttled_us / 1000
        ));
    }
    if !p.achieved.is_empty() {
        let achieved: Vec<String> = p
            .achieved
            .iter()
            .map(|(k, v)| format!("{k}={v:.1}"))
            .collect();
        line.push_str(&format!("\n    achieves     {}", achieved.join(", ")));
    }
    if let Some(exit) = &p.exit {
        line.push_str(&format!("\n    exit         {exit}"));
    }
    line.push_str(&format!(
        "\n    control port {}",
        if p.control_registered {
            "registered"
        } else {
            "not registered"
        }
    ));
    line
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    fn print_json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, value)?;
        writeln!(stdout)?;
        Ok(())
    }

    fn print(&self, text: &str) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()?;
        Ok(())
    }

    pub fn message(&self, text: &str) -> anyhow::Result<()> {
        if self.json {
            self.print_json(&serde_json::json!({ "message": text }))
        } else {
            self.print(text)
        }
    }

    pub fn admission(&self, outcome: &AdmissionOutcome, dry_run: bool) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(outcome);
        }
        match outcome {
            AdmissionOutcome::Admitted {
                session,
                shifts,
                shadow_prices,
            } => {
                let what = if dry_run {
                    "would be admitted".to_string()
                } else {
                    format!("session {} admitted", session.id)
                };
                self.print(&format!(
                    "{what}: {}/{} at {} (utility {:.3})",
                    session.application, session.variant, session.setpoint, session.utility
                ))?;
                for p in &session.processes {
                    self.print(&process_line(p))?;
                }
                for shift in shifts {
                    self.print(&format!(
                        "  session {} moves from {} to {}",
                        shift.session, shift.from, shift.to
                    ))?;
                }
                let priced: Vec<String> = shadow_prices
                    .iter()
                    .filter(|p| p.price > 1e-9)
                    .map(|p| format!("{} {:.4}", p.resource, p.price))
                    .collect();
                if !priced.is_empty() {
                    self.print(&format!("  shadow prices: {}", priced.join(", ")))?;
                }
                Ok(())
            }
            AdmissionOutcome::Rejected { binding, reason } => self.print(&format!(
                "rejected: {reason} (binding: {})",
                if binding.is_empty() {
                    "-".into()
                } else {
                    binding.join(", ")
                }
            )),
        }
    }

    pub fn sessions(&self, sessions: &[SessionView]) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&sessions);
        }
        self.print(&format!(
            "{:>4}  {:<8} {:<22} {:<10} {:<10} {:<14} {:<32} {:>7}  {:>9}  {:>8}",
            "ID",
            "USER",
            "APPLICATION/VARIANT",
            "STATE",
            "NODE",
            "PIDS",
            "SET-POINT",
            "UTILITY",
            "CPU",
            "MEMORY"
        ))?;
        for s in sessions {
            let cpu: f64 = s.processes.iter().map(|p| p.reservation.cpu.cpus()).sum();
            let mem: u64 = s
                .processes
                .iter()
                .map(|p| p.reservation.memory_max_bytes)
                .sum();
            self.print(&format!(
                "{:>4}  {:<8} {:<22} {:<10} {:<10} {:<14} {:<32} {:>7.3}  {:>5.3} cpu  {:>4} MiB",
                s.id,
                s.user,
                format!("{}/{}", s.application, s.variant),
                s.state.to_string(),
                nodes(s),
                pids(s),
                s.setpoint.to_string(),
                s.utility,
                cpu,
                mem >> 20
            ))?;
        }
        Ok(())
    }

    /// In text, says when a list shows only part of what matched (JSON stays the list).
    pub fn shown(&self, shown: usize, offset: u64, total: u64, what: &str) -> anyhow::Result<()> {
        if self.json || (offset == 0 && shown as u64 >= total) {
            return Ok(());
        }
        self.print(&format!(
            "({shown} of {total} {what} shown, from #{}; see --offset and --limit)",
            offset + 1
        ))
    }

    pub fn session(&self, s: &SessionView) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(s);
        }
        let mut text = format!(
            "session {}\n  user         {}\n  application  {}/{}\n  state        {}\n  node         {}\n  pids         {}\n  set-point    {}\n  utility      {:.3} (weight {:.2})",
            s.id,
            s.user,
            s.application,
            s.variant,
            s.state,
            nodes(s),
            pids(s),
            s.setpoint,
            s.utility,
            s.weight
        );
        if !s.minimum.is_empty() {
            let minimum: Vec<String> = s.minimum.iter().map(|(d, l)| format!("{d}={l}")).collect();
            text.push_str(&format!("\n  minimum      {}", minimum.join(",")));
        }
        if let Some(reason) = &s.end_reason {
            text.push_str(&format!("\n  ended        {reason}"));
        }
        self.print(&text)?;
        for p in &s.processes {
            self.print(&process_line(p))?;
        }
        Ok(())
    }

    /// A list of events: one JSON array, or one line each.
    pub fn events(&self, events: &[Event]) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&events);
        }
        events.iter().try_for_each(|e| self.event(e))
    }

    /// One event: one JSON object per line (for streams), or one line of text.
    pub fn event(&self, e: &Event) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(e);
        }
        let subject = match (&e.session, &e.node) {
            (Some(s), Some(n)) => format!("session {s} on {n}"),
            (Some(s), None) => format!("session {s}"),
            (None, Some(n)) => format!("node {n}"),
            (None, None) => "sesco".into(),
        };
        self.print(&format!(
            "#{:<5} {} {subject}: {}",
            e.seq,
            time(e.time_ms),
            e.kind
        ))
    }

    pub fn applications(&self, apps: &[ApplicationDef]) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&apps);
        }
        for app in apps {
            self.print(&format!("{}  {}", app.name, app.description))?;
            for v in &app.variants {
                self.print(&format!(
                    "  variant {} ({} class, {} process(es), {} set-points)  {}",
                    v.name,
                    v.cpu_class,
                    v.processes.len(),
                    v.setpoint_count(),
                    v.description
                ))?;
                for d in &v.dimensions {
                    let levels: Vec<String> = d
                        .levels
                        .iter()
                        .map(|l| format!("{} (u={})", l.name, l.utility))
                        .collect();
                    self.print(&format!("    {}: {}", d.name, levels.join(", ")))?;
                }
            }
        }
        Ok(())
    }

    pub fn nodes(&self, nodes: &[NodeView]) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&nodes);
        }
        for n in nodes {
            let hw = n
                .hardware
                .as_ref()
                .map_or("no report yet".to_string(), |h| {
                    format!(
                        "{} CPUs, {} MiB, cgroups {}, kernel {}",
                        h.cpus,
                        h.memory_bytes >> 20,
                        h.cgroup_mode,
                        h.kernel
                    )
                });
            self.print(&format!("{} [{}] {}", n.name, n.state, hw))?;
            if let Some(h) = &n.hardware {
                for line in hardware_lines(h) {
                    self.print(&format!("  {line}"))?;
                }
            }
            for r in &n.resources {
                self.print(&format!(
                    "  {:<16} reserved {:>9.2} of {:>9.2} {}{}",
                    r.resource,
                    r.reserved,
                    r.capacity,
                    r.unit,
                    r.used.map_or(String::new(), |u| format!(", using {u:.2}"))
                ))?;
            }
        }
        Ok(())
    }

    pub fn users(&self, users: &[UserDef]) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&users);
        }
        for u in users {
            self.print(&format!(
                "{:<12} unix {:<14} group {:<12} priority {:<5} {}",
                u.name,
                u.unix_account,
                u.group,
                u.priority,
                if u.admin { "admin" } else { "" }
            ))?;
        }
        Ok(())
    }

    pub fn groups(&self, groups: &[GroupDef]) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&groups);
        }
        for g in groups {
            self.print(&format!(
                "{:<12} priority {:<5} {}",
                g.name, g.priority, g.description
            ))?;
        }
        Ok(())
    }

    pub fn world_problems(&self, problems: &[WorldProblem]) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&problems);
        }
        for p in problems {
            eprintln!("{p}");
        }
        Ok(())
    }
}

/// The discovered topology, real-time partition, NICs and disks of a node, one line each.
fn hardware_lines(h: &sesco_proto::node::Hardware) -> Vec<String> {
    let mut out = Vec::new();
    let t = &h.topology;
    if t.threads > 0 {
        let numa: Vec<String> = t
            .numa_nodes
            .iter()
            .map(|n| {
                format!(
                    "node{} {} CPUs {} MiB",
                    n.id,
                    n.cpus.len(),
                    n.memory_bytes >> 20
                )
            })
            .collect();
        out.push(format!(
            "topology: {} socket(s), {} core(s), {} thread(s); NUMA {}",
            t.sockets,
            t.cores,
            t.threads,
            numa.join(", ")
        ));
    }
    if let Some(rt) = &h.realtime {
        let cpus: Vec<String> = rt.cpus.iter().map(u32::to_string).collect();
        out.push(format!(
            "real-time: CPUs {}, deadline bound {:.3} CPU, {:.3} booked",
            cpus.join(","),
            rt.deadline_bound,
            rt.booked
        ));
    }
    for nic in &h.nics {
        out.push(format!(
            "nic {}{}: {} mtu {} {}{} {}",
            nic.name,
            if nic.is_virtual { " (virtual)" } else { "" },
            nic.state,
            nic.mtu,
            nic.speed_mbps
                .map_or("speed unknown".to_string(), |s| format!("{s} Mbit/s")),
            nic.mac.as_ref().map_or(String::new(), |m| format!(" {m}")),
            nic.addresses.join(" ")
        ));
    }
    for d in &h.block_devices {
        out.push(format!(
            "disk {} ({}:{}): {} MiB, {}",
            d.name,
            d.major,
            d.minor,
            d.size_bytes >> 20,
            if d.rotational {
                "rotational"
            } else {
                "solid-state"
            }
        ));
    }
    out
}
