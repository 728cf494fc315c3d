//! The application protocol: newline-delimited JSON between a session's process and the
//! Lrmd that started it, over the Unix socket named by `SESCO_CONTROL_SOCKET`.
//!
//! It is the language-neutral face of the control port (`docs/control-protocol.md`): the
//! application says which versions it speaks and proves membership of its session with
//! the session token; Lrmd answers with the version chosen, registers the control port
//! with Sesco on the application's behalf, and relays set-points down and acks and QoS
//! reports up. Every line is one JSON object with a `type`; unknown fields are ignored,
//! so a newer peer's additions never break an older one. A line holds at most
//! [`MAX_LINE_BYTES`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::control::{SetPointChange, SetPointDirection};
use crate::session::{CpuReservation, Reservation};

/// The environment variable holding the socket's path.
pub const ENV_CONTROL_SOCKET: &str = "SESCO_CONTROL_SOCKET";

/// The versions this build speaks, oldest first. Version 2 adds liveness (`ping`, `pong`)
/// and the `sesco` notice when Lrmd's link to Sesco goes down or comes back.
pub const VERSIONS: &[u32] = &[1, 2];

/// The longest line either side sends or accepts, newline excluded.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The most versions a hello may list.
pub const MAX_OFFERED_VERSIONS: usize = 16;

/// The highest version both sides speak.
pub fn choose_version(offered: &[u32]) -> Option<u32> {
    offered
        .iter()
        .copied()
        .filter(|v| VERSIONS.contains(v))
        .max()
}

/// Application → Lrmd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AppLine {
    Hello(AppHello),
    Ack(AppAck),
    Report(AppReport),
    Ping(AppPing),
}

impl AppLine {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::Ack(_) => "ack",
            Self::Report(_) => "report",
            Self::Ping(_) => "ping",
        }
    }
}

/// Registration: the versions the application speaks and its session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppHello {
    pub versions: Vec<u32>,
    /// `SESCO_SESSION_TOKEN` from the environment.
    pub token: String,
    /// Free text naming the application, for logs.
    #[serde(default)]
    pub agent: String,
}

/// The application has adapted to set-point `sequence` (and every older one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppAck {
    pub sequence: u64,
}

/// The QoS the application achieves, by dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppReport {
    pub achieved: BTreeMap<String, f64>,
}

/// Liveness (version 2): Lrmd answers with a `pong` carrying the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppPing {
    #[serde(default)]
    pub id: u64,
}

/// Lrmd → application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrmdLine {
    Welcome(AppWelcome),
    Setpoint(AppSetPoint),
    Pong(AppPong),
    Sesco(SescoLink),
    Error(AppError),
}

/// Registration accepted by Sesco.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppWelcome {
    /// The version chosen: the highest both sides speak.
    pub version: u32,
    pub session: u64,
    pub process: u32,
    pub server: String,
}

/// A set-point to adapt to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSetPoint {
    pub sequence: u64,
    /// `initial`, `lower` (adapt, then ack: the reservation shrinks after the ack),
    /// `raise` (the reservation has already grown) or `lateral`.
    pub direction: String,
    pub levels: Vec<AppLevel>,
    pub reservation: AppReservation,
}

impl AppSetPoint {
    /// The value of the level chosen for `dimension`.
    pub fn value(&self, dimension: &str) -> Option<f64> {
        self.levels
            .iter()
            .find(|l| l.dimension == dimension)
            .map(|l| l.value)
    }
}

/// The level chosen in one dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppLevel {
    pub dimension: String,
    pub level: String,
    /// 0 is the lowest quality.
    pub index: u32,
    pub value: f64,
}

/// The reservation behind a set-point, for this process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppReservation {
    /// `bandwidth` (a CPU cap) or `deadline` (SCHED_DEADLINE).
    pub cpu_class: String,
    /// CPU bandwidth in CPUs (0.25 = a quarter of one CPU).
    pub cpus: f64,
    /// SCHED_DEADLINE parameters, for the `deadline` class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_us: Option<u64>,
    pub memory_max_bytes: u64,
    pub memory_min_bytes: u64,
    pub pids_max: u64,
}

/// The answer to a `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppPong {
    pub id: u64,
    /// Whether Lrmd is connected to Sesco for this process right now.
    pub sesco_connected: bool,
}

/// Lrmd's link to Sesco went down or came back (version 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SescoLink {
    pub connected: bool,
}

/// A line was refused, or the control port ended. Nothing changed because of the refused
/// line; unless `fatal`, the connection stays open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub fatal: bool,
}

impl AppError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            fatal: false,
        }
    }

    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self {
            fatal: true,
            ..Self::new(code, message)
        }
    }
}

impl From<&Reservation> for AppReservation {
    fn from(r: &Reservation) -> Self {
        let (cpu_class, runtime_us, deadline_us, period_us) = match r.cpu {
            CpuReservation::Bandwidth { .. } => ("bandwidth", None, None, None),
            CpuReservation::Deadline {
                runtime_us,
                deadline_us,
                period_us,
            } => (
                "deadline",
                Some(runtime_us),
                Some(deadline_us),
                Some(period_us),
            ),
        };
        Self {
            cpu_class: cpu_class.into(),
            cpus: r.cpu.cpus(),
            runtime_us,
            deadline_us,
            period_us,
            memory_max_bytes: r.memory_max_bytes,
            memory_min_bytes: r.memory_min_bytes,
            pids_max: r.pids_max,
        }
    }
}

impl From<&SetPointChange> for AppSetPoint {
    fn from(change: &SetPointChange) -> Self {
        Self {
            sequence: change.sequence,
            direction: match change.direction {
                SetPointDirection::Initial => "initial",
                SetPointDirection::Lower => "lower",
                SetPointDirection::Raise => "raise",
                SetPointDirection::Lateral => "lateral",
            }
            .into(),
            levels: change
                .setpoint
                .levels
                .iter()
                .map(|l| AppLevel {
                    dimension: l.dimension.clone(),
                    level: l.level.clone(),
                    index: l.index,
                    value: l.value,
                })
                .collect(),
            reservation: (&change.reservation).into(),
        }
    }
}

/// Why a line was refused. [`LineError::code`] is the `code` of the error line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("a line holds at most {MAX_LINE_BYTES} bytes; this one was longer and was ignored")]
    TooLong,
    #[error("the line is not UTF-8")]
    NotUtf8,
    #[error("the line is not JSON: {0}")]
    NotJson(String),
    #[error("a line must be a JSON object with a \"type\"")]
    NoType,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("bad {kind} message: {reason}")]
    Invalid { kind: &'static str, reason: String },
}

impl LineError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLong | Self::NotUtf8 | Self::NotJson(_) | Self::NoType => "bad_line",
            Self::UnknownType(_) => "unknown_type",
            Self::Invalid { .. } => "invalid",
        }
    }
}

fn parse_tagged<T: serde::de::DeserializeOwned>(
    line: &[u8],
    known: &[&'static str],
) -> Result<Option<T>, LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LineError::NotJson(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(LineError::NoType);
    };
    let Some(kind) = known.iter().find(|k| **k == kind) else {
        return Ok(None);
    };
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| LineError::Invalid {
            kind,
            reason: e.to_string(),
        })
}

/// Reads one line from an application. Unknown fields are ignored; an unknown type is an
/// error (the application chose a version, and that version's types are known).
pub fn parse_app_line(line: &[u8]) -> Result<AppLine, LineError> {
    match parse_tagged(line, &["hello", "ack", "report", "ping"])? {
        Some(line) => Ok(line),
        None => Err(LineError::UnknownType(
            serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_string))
                .unwrap_or_default(),
        )),
    }
}

/// Reads one line from Lrmd, as an application does: a type it does not know (from a
/// newer Lrmd) is `Ok(None)`, to be skipped.
pub fn parse_lrmd_line(line: &[u8]) -> Result<Option<LrmdLine>, LineError> {
    parse_tagged(line, &["welcome", "setpoint", "pong", "sesco", "error"])
}

/// One line, encoded with its newline.
pub fn encode_line<T: Serialize>(line: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).expect("protocol lines serialise");
    bytes.push(b'\n');
    bytes
}

/// What [`read_bounded_line`] found.
#[derive(Debug, PartialEq)]
pub enum ReadLine {
    /// A whole line, without its newline.
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE_BYTES`], read to its end and dropped.
    TooLong,
    /// The stream ended (a last line without a newline is returned first).
    End,
}

/// Reads one newline-terminated line holding at most [`MAX_LINE_BYTES`] bytes, never
/// buffering more than that: a longer line is consumed and reported as too long.
pub async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<ReadLine> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => ReadLine::TooLong,
                (false, true) => ReadLine::End,
                (false, false) => ReadLine::Line(line),
            });
        }
        let (chunk, ended) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if !too_long && line.len() + chunk.len() <= MAX_LINE_BYTES {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line = Vec::new();
        }
        let consumed = ended.unwrap_or(available.len());
        reader.consume(consumed);
        if ended.is_some() {
            return Ok(if too_long {
                ReadLine::TooLong
            } else {
                ReadLine::Line(line)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_common_version_is_chosen() {
        assert_eq!(choose_version(&[1]), Some(1));
        assert_eq!(choose_version(&[1, 2, 7]), Some(2));
        assert_eq!(choose_version(&[7, 8]), None);
        assert_eq!(choose_version(&[]), None);
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_types_named() {
        let hello = parse_app_line(
            br#"{"type":"hello","versions":[1,3],"token":"t","colour":"blue","agent":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            hello,
            AppLine::Hello(AppHello {
                versions: vec![1, 3],
                token: "t".into(),
                agent: "x".into()
            })
        );
        assert_eq!(
            parse_app_line(br#"{"type":"dance"}"#),
            Err(LineError::UnknownType("dance".into()))
        );
        assert_eq!(
            parse_lrmd_line(br#"{"type":"future","x":1}"#),
            Ok(None),
            "an application skips what a newer Lrmd adds"
        );
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert_eq!(parse_app_line(b"not json").unwrap_err().code(), "bad_line");
        assert_eq!(parse_app_line(b"[1,2]").unwrap_err(), LineError::NoType);
        assert_eq!(
            parse_app_line(&[0xff, 0xfe]).unwrap_err(),
            LineError::NotUtf8
        );
        let err = parse_app_line(br#"{"type":"ack","sequence":"three"}"#).unwrap_err();
        assert_eq!(err.code(), "invalid");
        assert!(err.to_string().contains("bad ack message"), "{err}");
        let long = vec![b' '; MAX_LINE_BYTES + 1];
        assert_eq!(parse_app_line(&long), Err(LineError::TooLong));
    }

    #[tokio::test]
    async fn a_long_line_is_dropped_whole_and_the_next_one_read() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\n{\"type\":\"ping\"}\nlast");
        let mut reader = tokio::io::BufReader::with_capacity(100, &input[..]);
        assert_eq!(
            read_bounded_line(&mut reader).await.unwrap(),
            ReadLine::TooLong
        );
        assert_eq!(
            read_bounded_line(&mut reader).await.unwrap(),
            ReadLine::Line(b"{\"type\":\"ping\"}".to_vec())
        );
        assert_eq!(
            read_bounded_line(&mut reader).await.unwrap(),
            ReadLine::Line(b"last".to_vec())
        );
        assert_eq!(read_bounded_line(&mut reader).await.unwrap(), ReadLine::End);
    }

    #[test]
    fn a_setpoint_line_round_trips() {
        let line = LrmdLine::Setpoint(AppSetPoint {
            sequence: 3,
            direction: "lower".into(),
            levels: vec![AppLevel {
                dimension: "frame_rate".into(),
                level: "24fps".into(),
                index: 2,
                value: 24.0,
            }],
            reservation: AppReservation {
                cpu_class: "bandwidth".into(),
                cpus: 0.5,
                runtime_us: None,
                deadline_us: None,
                period_us: None,
                memory_max_bytes: 1 << 24,
                memory_min_bytes: 1 << 23,
                pids_max: 64,
            },
        });
        let bytes = encode_line(&line);
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(
            parse_lrmd_line(&bytes[..bytes.len() - 1]).unwrap(),
            Some(line)
        );
    }
}
