//! Usage over time: samples kept per session and per node, drawn with egui_plot.

use std::collections::{HashMap, VecDeque};

use arq::proto::node::NodeView;
use arq::proto::session::{SessionId, SessionView};
use egui::{Color32, Ui};
use egui_plot::{Corner, GridInput, Legend, Line, Plot, PlotPoints, uniform_grid_spacer};

/// How much history a chart shows and keeps.
pub const WINDOW_MS: u64 = 5 * 60 * 1000;
/// Samples closer together than this replace each other.
const MIN_SPACING_MS: u64 = 500;

/// One point in time of a session's or node's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t_ms: u64,
    /// CPUs used over the last interval, when measured.
    pub cpu_used: Option<f64>,
    pub cpu_reserved: f64,
    /// MiB in use, when measured.
    pub memory_used: Option<f64>,
    pub memory_limit: f64,
}

#[derive(Default)]
pub struct UsageHistory {
    sessions: HashMap<SessionId, VecDeque<Sample>>,
    nodes: HashMap<String, VecDeque<Sample>>,
    /// The cluster's total utility over time, `(t_ms, utility)`.
    utility: VecDeque<(u64, f64)>,
}

fn push(series: &mut VecDeque<Sample>, sample: Sample) {
    if let Some(last) = series.back_mut()
        && sample.t_ms.saturating_sub(last.t_ms) < MIN_SPACING_MS
    {
        *last = sample;
    } else {
        series.push_back(sample);
    }
    while series
        .front()
        .is_some_and(|s| sample.t_ms.saturating_sub(s.t_ms) > WINDOW_MS)
    {
        series.pop_front();
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// A session's totals over its processes.
pub fn session_sample(session: &SessionView, t_ms: u64) -> Sample {
    let usage: Vec<_> = session.processes.iter().filter_map(|p| p.usage).collect();
    let measured = !usage.is_empty();
    Sample {
        t_ms,
        cpu_used: measured.then(|| usage.iter().map(|u| u.cpu_rate).sum()),
        cpu_reserved: session
            .processes
            .iter()
            .map(|p| p.reservation.cpu.cpus())
            .sum(),
        memory_used: measured.then(|| {
            usage
                .iter()
                .map(|u| u.memory_current_bytes as f64 / MIB)
                .sum()
        }),
        memory_limit: session
            .processes
            .iter()
            .map(|p| p.reservation.memory_max_bytes as f64 / MIB)
            .sum(),
    }
}

/// A node's CPU and memory, from its resource list.
pub fn node_sample(node: &NodeView, t_ms: u64) -> Sample {
    let find = |suffix: &str| node.resources.iter().find(|r| r.resource.ends_with(suffix));
    let cpu = find("/cpu");
    let memory = find("/memory").or_else(|| find("/mem"));
    Sample {
        t_ms,
        cpu_used: cpu.and_then(|r| r.used),
        cpu_reserved: cpu.map_or(0.0, |r| r.reserved),
        memory_used: memory.and_then(|r| r.used),
        memory_limit: memory.map_or(0.0, |r| r.reserved),
    }
}

impl UsageHistory {
    pub fn record_sessions(&mut self, sessions: &[SessionView], t_ms: u64) {
        for session in sessions.iter().filter(|s| s.state.is_live()) {
            push(
                self.sessions.entry(session.id).or_default(),
                session_sample(session, t_ms),
            );
        }
    }

    pub fn record_nodes(&mut self, nodes: &[NodeView], t_ms: u64) {
        for node in nodes {
            push(
                self.nodes.entry(node.name.clone()).or_default(),
                node_sample(node, t_ms),
            );
        }
    }

    pub fn record_utility(&mut self, total: f64, t_ms: u64) {
        match self.utility.back_mut() {
            Some(last) if t_ms.saturating_sub(last.0) < MIN_SPACING_MS => *last = (t_ms, total),
            _ => self.utility.push_back((t_ms, total)),
        }
        while self
            .utility
            .front()
            .is_some_and(|(t, _)| t_ms.saturating_sub(*t) > WINDOW_MS)
        {
            self.utility.pop_front();
        }
    }

    /// The cluster's total utility as seen by this window, oldest first.
    pub fn utility_samples(&self) -> impl ExactSizeIterator<Item = &(u64, f64)> {
        self.utility.iter()
    }

    pub fn session_samples(&self, id: SessionId) -> Vec<Sample> {
        self.sessions
            .get(&id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn node_samples(&self, name: &str) -> Vec<Sample> {
        self.nodes
            .get(name)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

const USED: Color32 = Color32::from_rgb(0x3d, 0x9a, 0xe8);
const RESERVED: Color32 = Color32::from_rgb(0xe8, 0x9a, 0x3d);

fn series(
    samples: &[Sample],
    now_ms: u64,
    value: impl Fn(&Sample) -> Option<f64>,
) -> Vec<[f64; 2]> {
    samples
        .iter()
        .filter_map(|s| {
            let x = -(now_ms.saturating_sub(s.t_ms) as f64) / 1000.0;
            value(s).map(|y| [x, y])
        })
        .collect()
}

/// A step of 1, 2 or 5 × 10ⁿ, the smallest at least `rough`.
pub fn nice_step(rough: f64) -> f64 {
    if !(rough.is_finite() && rough > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// Grid lines for about four labelled steps over what the chart shows, whatever its scale
/// (egui_plot's default puts a 0–0.8 range between the marks 0 and 1, labelling "0" alone).
fn value_grid(input: GridInput) -> [f64; 3] {
    let step = nice_step((input.bounds.1 - input.bounds.0).abs() / 4.0);
    [step / 2.0, step, step * 5.0]
}

/// A value on the chart's axis with as many decimals as its step needs.
pub fn axis_label(value: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step < 1.0 {
        (-step.log10().floor()) as usize
    } else {
        0
    };
    format!("{value:.decimals$}")
}

/// A chart over the last minute or more (`0` is now, in seconds), from 0 to at least
/// `top`, with readable value labels, not draggable or zoomable.
pub fn time_plot<'a>(id: impl egui::AsIdSalt, height: f32, top: f64) -> Plot<'a> {
    Plot::new(id)
        .height(height)
        .include_y(0.0)
        .include_y(if top > 0.0 { top } else { 1.0 })
        .include_x(-60.0)
        .include_x(0.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .x_axis_label("seconds (0 = now)")
        .y_grid_spacer(uniform_grid_spacer(value_grid))
        .y_axis_formatter(|mark, _| axis_label(mark.value, mark.step_size))
        .y_axis_min_width(36.0)
}

/// One chart of a quantity and its bound over the last minutes, `0` being now.
fn chart(ui: &mut Ui, id: String, title: &str, bound: (&str, Vec<[f64; 2]>), used: Vec<[f64; 2]>) {
    ui.label(egui::RichText::new(title).strong());
    // Headroom above the highest line, so that a flat bound is not lost in the frame.
    let top = bound
        .1
        .iter()
        .chain(&used)
        .map(|[_, y]| *y)
        .fold(0.0, f64::max);
    time_plot(id, 170.0, top * 1.3)
        .legend(Legend::default().position(Corner::LeftTop))
        .show(ui, |plot| {
            plot.line(Line::new(bound.0.to_string(), PlotPoints::new(bound.1)).color(RESERVED));
            plot.line(Line::new("used", PlotPoints::new(used)).color(USED));
        });
}

/// Two charts side by side: CPU (used and reserved) and memory (used and its bound).
pub fn usage_charts(ui: &mut Ui, id: &str, samples: &[Sample], now_ms: u64, bound_name: &str) {
    ui.columns(2, |columns| {
        chart(
            &mut columns[0],
            format!("{id}-cpu"),
            "CPU (CPUs)",
            (
                "reserved",
                series(samples, now_ms, |s| Some(s.cpu_reserved)),
            ),
            series(samples, now_ms, |s| s.cpu_used),
        );
        chart(
            &mut columns[1],
            format!("{id}-memory"),
            "Memory (MiB)",
            (
                bound_name,
                series(samples, now_ms, |s| Some(s.memory_limit)),
            ),
            series(samples, now_ms, |s| s.memory_used),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64) -> Sample {
        Sample {
            t_ms,
            cpu_used: Some(0.1),
            cpu_reserved: 0.2,
            memory_used: None,
            memory_limit: 16.0,
        }
    }

    #[test]
    fn a_small_series_gets_labels_in_its_own_scale() {
        // 0–0.8 CPUs: steps of 0.2, labelled with one decimal.
        let step = nice_step(0.8 / 4.0);
        assert!((step - 0.2).abs() < 1e-12, "{step}");
        assert_eq!(axis_label(0.6, step), "0.6");
        assert_eq!(nice_step(0.03), 0.05);
        assert_eq!(axis_label(0.05, 0.05), "0.05");
        assert_eq!(nice_step(300.0), 500.0);
        assert_eq!(axis_label(1500.0, 500.0), "1500");
    }

    #[test]
    fn close_samples_replace_each_other_and_old_ones_go() {
        let mut s = VecDeque::new();
        push(&mut s, sample(1_000));
        push(&mut s, sample(1_200));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].t_ms, 1_200);
        push(&mut s, sample(2_000));
        push(&mut s, sample(2_000 + WINDOW_MS + 1));
        assert_eq!(
            s.iter().map(|x| x.t_ms).collect::<Vec<_>>(),
            [2_000 + WINDOW_MS + 1]
        );
    }
}
