//! Sesco's control port for C and C++ applications (`include/sesco_control.h`).
//!
//! ```c
//! #include <sesco_control.h>
//!
//! char error[256];
//! sesco_control *port = sesco_control_open(error, sizeof error);
//! if (!port) { fprintf(stderr, "%s\n", error); return 2; }
//! for (;;) {
//!     sesco_setpoint *sp;
//!     if (sesco_control_next(port, 100, &sp) == 1) {
//!         rate = sesco_setpoint_value(sp, "frame_rate", rate);
//!         sesco_control_ack(port, sp);   /* adapted: Sesco may now shrink */
//!         sesco_setpoint_free(sp);
//!     }
//!     do_one_unit_of_work(rate);
//! }
//! ```
//!
//! The library speaks the control protocol (`docs/control-protocol.md`) on the Unix socket
//! Lrmd names in `SESCO_CONTROL_SOCKET`, with the token from `SESCO_SESSION_TOKEN`. It is
//! blocking and uses no thread of its own; `sesco_control_fd` gives the socket for `poll`.
//! If Lrmd restarts, the next call reconnects and registers again. A port is used by one
//! thread at a time.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sesco_proto::app::{self, AppSetPoint, LrmdLine};

/// How long opening (or reopening after an Lrmd restart) waits for Lrmd and Sesco.
const PATIENCE: Duration = Duration::from_secs(30);

/// A registered control port.
pub struct SescoControl {
    path: String,
    token: String,
    versions: Vec<u32>,
    stream: UnixStream,
    buffer: Vec<u8>,
    version: u32,
    session: u64,
    process: u32,
    sesco_connected: bool,
    setpoints: VecDeque<AppSetPoint>,
    last_error: CString,
    closed: bool,
}

/// A set-point received from Sesco: one level per QoS dimension and the reservation
/// behind it. Freed with `sesco_setpoint_free`.
pub struct SescoSetpoint {
    setpoint: AppSetPoint,
    direction: CString,
    dimensions: Vec<CString>,
    levels: Vec<CString>,
}

/// A failure: the protocol's code and a message.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

fn failure(code: &str, message: impl Into<String>) -> Failure {
    Failure {
        code: code.into(),
        message: message.into(),
    }
}

fn c_string(text: String) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

fn write_line(stream: &mut UnixStream, line: &Value) -> std::io::Result<()> {
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    stream.write_all(&bytes)
}

impl SescoControl {
    fn open(path: String, token: String, versions: Vec<u32>) -> Result<Self, Failure> {
        let stream = connect_patiently(&path)?;
        let mut port = Self {
            path,
            token,
            versions,
            stream,
            buffer: Vec::new(),
            version: 0,
            session: 0,
            process: 0,
            sesco_connected: true,
            setpoints: VecDeque::new(),
            last_error: CString::default(),
            closed: false,
        };
        port.hello()?;
        Ok(port)
    }

    fn hello(&mut self) -> Result<(), Failure> {
        let hello = json!({
            "type": "hello",
            "versions": self.versions,
            "token": self.token,
            "agent": format!("libsesco_control {}", env!("CARGO_PKG_VERSION")),
        });
        write_line(&mut self.stream, &hello)
            .map_err(|e| failure("unavailable", format!("cannot write to Lrmd: {e}")))?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
                return Err(failure("unavailable", "no answer to the hello"));
            };
            let mut welcomed = false;
            for line in self.read_lines(remaining)? {
                match line {
                    LrmdLine::Welcome(welcome) if !welcomed => {
                        self.version = welcome.version;
                        self.session = welcome.session;
                        self.process = welcome.process;
                        welcomed = true;
                    }
                    LrmdLine::Error(e) if !welcomed => return Err(failure(&e.code, e.message)),
                    // What came with the welcome (the first set-point) is kept.
                    other => self.take(other)?,
                }
            }
            if welcomed {
                return Ok(());
            }
        }
    }

    /// Lines that arrive within `timeout` (zero: only those already waiting).
    fn read_lines(&mut self, timeout: Duration) -> Result<Vec<LrmdLine>, Failure> {
        let closed = || failure("unavailable", "Lrmd closed the control socket");
        let set = if timeout.is_zero() {
            self.stream.set_nonblocking(true)
        } else {
            self.stream
                .set_nonblocking(false)
                .and_then(|()| self.stream.set_read_timeout(Some(timeout)))
        };
        set.map_err(|e| failure("unavailable", e.to_string()))?;
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => return Err(closed()),
            Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(failure("unavailable", e.to_string())),
        }
        let mut lines = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            // A line this library cannot read, or of a type from a newer Lrmd, is skipped.
            if let Ok(Some(line)) = app::parse_lrmd_line(&raw[..end]) {
                lines.push(line);
            }
        }
        if self.buffer.len() > app::MAX_LINE_BYTES {
            self.buffer.clear();
        }
        Ok(lines)
    }

    fn take(&mut self, line: LrmdLine) -> Result<(), Failure> {
        match line {
            LrmdLine::Setpoint(setpoint) => self.setpoints.push_back(setpoint),
            LrmdLine::Sesco(link) => self.sesco_connected = link.connected,
            LrmdLine::Error(e) if e.fatal => {
                self.closed = true;
                return Err(failure(&e.code, e.message));
            }
            LrmdLine::Error(e) => self.last_error = c_string(format!("{}: {}", e.code, e.message)),
            LrmdLine::Welcome(_) | LrmdLine::Pong(_) => {}
        }
        Ok(())
    }

    /// Reads what arrives within `timeout`; reconnects if Lrmd went away.
    fn pump(&mut self, timeout: Duration) -> Result<(), Failure> {
        match self.read_lines(timeout) {
            Ok(lines) => {
                for line in lines {
                    self.take(line)?;
                }
                Ok(())
            }
            Err(_) if !self.closed => self.reconnect(),
            Err(e) => Err(e),
        }
    }

    fn reconnect(&mut self) -> Result<(), Failure> {
        self.stream = connect_patiently(&self.path)?;
        self.buffer.clear();
        self.hello()
    }

    fn send(&mut self, line: Value) -> Result<(), Failure> {
        if self.closed {
            return Err(failure("closed", "the control port is closed"));
        }
        if write_line(&mut self.stream, &line).is_err() {
            self.reconnect()?;
            write_line(&mut self.stream, &line)
                .map_err(|e| failure("unavailable", format!("cannot write to Lrmd: {e}")))?;
        }
        Ok(())
    }

    fn next(&mut self, timeout: Duration) -> Result<Option<AppSetPoint>, Failure> {
        let deadline = Instant::now() + timeout;
        self.pump(Duration::ZERO)?;
        while self.setpoints.is_empty() {
            let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            if remaining.is_zero() {
                break;
            }
            self.pump(remaining)?;
        }
        let newest = self.setpoints.pop_back();
        self.setpoints.clear();
        Ok(newest)
    }
}

fn connect_patiently(path: &str) -> Result<UnixStream, Failure> {
    let deadline = Instant::now() + PATIENCE;
    let mut delay = Duration::from_millis(50);
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() + delay > deadline => {
                return Err(failure(
                    "unavailable",
                    format!("cannot reach Lrmd at {path}: {e}"),
                ));
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Copies `text` into a caller's buffer of `len` bytes, NUL-terminated and truncated.
unsafe fn write_error(buffer: *mut c_char, len: usize, text: &str) {
    if buffer.is_null() || len == 0 {
        return;
    }
    let n = text.len().min(len - 1);
    // SAFETY: the caller gave a writable buffer of `len` bytes; n + 1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buffer, n);
        *buffer.add(n) = 0;
    }
}

/// SAFETY: `text` is NULL or a NUL-terminated string.
unsafe fn string_arg(text: *const c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: as the caller promised.
    Some(
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn env(name: &str) -> Result<String, Failure> {
    std::env::var(name).map_err(|_| {
        failure(
            "missing_env",
            format!("{name} is not set: is this process running in a Sesco session?"),
        )
    })
}

/// Opens the control port from the environment Lrmd set up (`SESCO_CONTROL_SOCKET`,
/// `SESCO_SESSION_TOKEN`) and registers it, offering every protocol version this library
/// speaks. Returns NULL on failure, with the reason in `error` (a buffer of `error_len`
/// bytes; may be NULL).
///
/// # Safety
/// `error` is NULL or writable for `error_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_open(
    error: *mut c_char,
    error_len: usize,
) -> *mut SescoControl {
    // SAFETY: passed on from the caller.
    unsafe {
        sesco_control_open_with(
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null(),
            0,
            error,
            error_len,
        )
    }
}

/// Opens the control port with explicit settings: the socket's path and the session
/// token (NULL: from the environment) and the protocol versions to offer (`versions`
/// NULL or `version_count` 0: every version this library speaks).
///
/// # Safety
/// `path` and `token` are NULL or NUL-terminated; `versions` is NULL or readable for
/// `version_count` values; `error` is NULL or writable for `error_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_open_with(
    path: *const c_char,
    token: *const c_char,
    versions: *const u32,
    version_count: usize,
    error: *mut c_char,
    error_len: usize,
) -> *mut SescoControl {
    // SAFETY: as the caller promised.
    let (path, token) = unsafe { (string_arg(path), string_arg(token)) };
    let versions = if versions.is_null() || version_count == 0 {
        app::VERSIONS.to_vec()
    } else {
        // SAFETY: as the caller promised.
        unsafe { std::slice::from_raw_parts(versions, version_count) }.to_vec()
    };
    let opened = (|| {
        let path = match path {
            Some(p) => p,
            None => env(app::ENV_CONTROL_SOCKET)?,
        };
        let token = match token {
            Some(t) => t,
            None => env("SESCO_SESSION_TOKEN")?,
        };
        SescoControl::open(path, token, versions)
    })();
    match opened {
        Ok(port) => Box::into_raw(Box::new(port)),
        Err(e) => {
            // SAFETY: as the caller promised.
            unsafe { write_error(error, error_len, &e.to_string()) };
            std::ptr::null_mut()
        }
    }
}

/// Waits up to `timeout_ms` milliseconds (0: does not wait; negative: waits until one
/// comes) for a set-point. Returns 1 and stores a set-point in `*out` (free it with
/// `sesco_setpoint_free`) when one came — the newest, when several did; 0 when none came;
/// -1 when the port is closed for good (the session ended) or Lrmd cannot be reached
/// again: see `sesco_control_last_error`.
///
/// # Safety
/// `port` is an open port; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_next(
    port: *mut SescoControl,
    timeout_ms: c_int,
    out: *mut *mut SescoSetpoint,
) -> c_int {
    // SAFETY: as the caller promised.
    let (Some(port), false) = (unsafe { port.as_mut() }, out.is_null()) else {
        return -1;
    };
    let timeout = if timeout_ms < 0 {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        Duration::from_millis(timeout_ms as u64)
    };
    match port.next(timeout) {
        Ok(Some(setpoint)) => {
            let held = SescoSetpoint {
                direction: c_string(setpoint.direction.clone()),
                dimensions: setpoint
                    .levels
                    .iter()
                    .map(|l| c_string(l.dimension.clone()))
                    .collect(),
                levels: setpoint
                    .levels
                    .iter()
                    .map(|l| c_string(l.level.clone()))
                    .collect(),
                setpoint,
            };
            // SAFETY: `out` is writable, as the caller promised.
            unsafe { *out = Box::into_raw(Box::new(held)) };
            1
        }
        Ok(None) => 0,
        Err(e) => {
            port.last_error = c_string(e.to_string());
            -1
        }
    }
}

/// Tells Sesco the application has adapted to `setpoint` (and every older one). A lower
/// set-point's reservation shrinks only after this. Returns 0, or -1 on failure.
///
/// # Safety
/// `port` is an open port and `setpoint` a set-point from it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_ack(
    port: *mut SescoControl,
    setpoint: *const SescoSetpoint,
) -> c_int {
    // SAFETY: as the caller promised.
    let (Some(port), Some(setpoint)) = (unsafe { port.as_mut() }, unsafe { setpoint.as_ref() })
    else {
        return -1;
    };
    let line = json!({"type": "ack", "sequence": setpoint.setpoint.sequence});
    let sent = port.send(line);
    result(port, sent)
}

fn result(port: &mut SescoControl, outcome: Result<(), Failure>) -> c_int {
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            port.last_error = c_string(e.to_string());
            -1
        }
    }
}

/// Tells Sesco the QoS the application achieves: `count` pairs of a dimension's name and
/// the value achieved. Returns 0, or -1 on failure (a refusal from Sesco comes later, as
/// the last error).
///
/// # Safety
/// `port` is an open port; `dimensions` and `values` are readable for `count` entries,
/// each dimension NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_report(
    port: *mut SescoControl,
    dimensions: *const *const c_char,
    values: *const f64,
    count: usize,
) -> c_int {
    // SAFETY: as the caller promised.
    let Some(port) = (unsafe { port.as_mut() }) else {
        return -1;
    };
    if count > 0 && (dimensions.is_null() || values.is_null()) {
        return -1;
    }
    let mut achieved = Value::Object(Default::default());
    for i in 0..count {
        // SAFETY: as the caller promised.
        let (name, value) = unsafe { (string_arg(*dimensions.add(i)), *values.add(i)) };
        let Some(name) = name else { return -1 };
        if !value.is_finite() {
            port.last_error = c_string(format!(
                "invalid: the achieved {name} is not a finite number"
            ));
            return -1;
        }
        achieved[name] = json!(value);
    }
    let sent = port.send(json!({"type": "report", "achieved": achieved}));
    result(port, sent)
}

/// The socket, to wait on with `poll` or `select`: readable when a line from Lrmd is
/// waiting (then call `sesco_control_next` with timeout 0).
///
/// # Safety
/// `port` is an open port.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_fd(port: *const SescoControl) -> c_int {
    // SAFETY: as the caller promised.
    unsafe { port.as_ref() }.map_or(-1, |p| p.stream.as_raw_fd())
}

/// The protocol version Lrmd chose.
///
/// # Safety
/// `port` is an open port.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_version(port: *const SescoControl) -> u32 {
    // SAFETY: as the caller promised.
    unsafe { port.as_ref() }.map_or(0, |p| p.version)
}

/// The session this process belongs to.
///
/// # Safety
/// `port` is an open port.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_session(port: *const SescoControl) -> u64 {
    // SAFETY: as the caller promised.
    unsafe { port.as_ref() }.map_or(0, |p| p.session)
}

/// The process's index in its session.
///
/// # Safety
/// `port` is an open port.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_process(port: *const SescoControl) -> u32 {
    // SAFETY: as the caller promised.
    unsafe { port.as_ref() }.map_or(0, |p| p.process)
}

/// Whether Lrmd's link to Sesco is up, as Lrmd last told (protocol version 2). Returns 1
/// or 0.
///
/// # Safety
/// `port` is an open port.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_sesco_connected(port: *const SescoControl) -> c_int {
    // SAFETY: as the caller promised.
    unsafe { port.as_ref() }.map_or(0, |p| p.sesco_connected as c_int)
}

/// The last error, as `code: message` ("" if none). Valid until the next call on `port`.
///
/// # Safety
/// `port` is an open port.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_last_error(port: *const SescoControl) -> *const c_char {
    // SAFETY: as the caller promised.
    unsafe { port.as_ref() }.map_or(c"".as_ptr(), |p| p.last_error.as_ptr())
}

/// Closes the port and frees it.
///
/// # Safety
/// `port` is NULL or an open port, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_control_close(port: *mut SescoControl) {
    if !port.is_null() {
        // SAFETY: it came from Box::into_raw in sesco_control_open_with.
        drop(unsafe { Box::from_raw(port) });
    }
}

/// The set-point's sequence number: it grows with every change of the session's.
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_sequence(setpoint: *const SescoSetpoint) -> u64 {
    // SAFETY: as the caller promised.
    unsafe { setpoint.as_ref() }.map_or(0, |s| s.setpoint.sequence)
}

/// Why it was sent: "initial", "lower" (ack once adapted: the reservation shrinks after),
/// "raise" (the reservation has already grown) or "lateral".
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_direction(setpoint: *const SescoSetpoint) -> *const c_char {
    // SAFETY: as the caller promised.
    unsafe { setpoint.as_ref() }.map_or(c"".as_ptr(), |s| s.direction.as_ptr())
}

/// How many dimensions the set-point has a level for.
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_level_count(setpoint: *const SescoSetpoint) -> usize {
    // SAFETY: as the caller promised.
    unsafe { setpoint.as_ref() }.map_or(0, |s| s.setpoint.levels.len())
}

/// The name of dimension `i` ("" past the end).
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_dimension(
    setpoint: *const SescoSetpoint,
    i: usize,
) -> *const c_char {
    // SAFETY: as the caller promised.
    unsafe { setpoint.as_ref() }
        .and_then(|s| s.dimensions.get(i))
        .map_or(c"".as_ptr(), |d| d.as_ptr())
}

/// The name of the level chosen in dimension `i` ("" past the end).
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_level(
    setpoint: *const SescoSetpoint,
    i: usize,
) -> *const c_char {
    // SAFETY: as the caller promised.
    unsafe { setpoint.as_ref() }
        .and_then(|s| s.levels.get(i))
        .map_or(c"".as_ptr(), |l| l.as_ptr())
}

/// The numeric value of the level chosen in `dimension`, or `fallback` if the set-point
/// has no such dimension.
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`; `dimension` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_value(
    setpoint: *const SescoSetpoint,
    dimension: *const c_char,
    fallback: f64,
) -> f64 {
    // SAFETY: as the caller promised.
    let (Some(s), Some(dimension)) = (unsafe { setpoint.as_ref() }, unsafe {
        string_arg(dimension)
    }) else {
        return fallback;
    };
    s.setpoint.value(&dimension).unwrap_or(fallback)
}

/// The CPU bandwidth of the reservation behind the set-point, in CPUs.
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_cpus(setpoint: *const SescoSetpoint) -> f64 {
    // SAFETY: as the caller promised.
    unsafe { setpoint.as_ref() }.map_or(0.0, |s| s.setpoint.reservation.cpus)
}

/// The memory limit of the reservation behind the set-point, in bytes.
///
/// # Safety
/// `setpoint` is a set-point from `sesco_control_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_memory_max_bytes(setpoint: *const SescoSetpoint) -> u64 {
    // SAFETY: as the caller promised.
    unsafe { setpoint.as_ref() }.map_or(0, |s| s.setpoint.reservation.memory_max_bytes)
}

/// Frees a set-point.
///
/// # Safety
/// `setpoint` is NULL or a set-point from `sesco_control_next`, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sesco_setpoint_free(setpoint: *mut SescoSetpoint) {
    if !setpoint.is_null() {
        // SAFETY: it came from Box::into_raw in sesco_control_next.
        drop(unsafe { Box::from_raw(setpoint) });
    }
}
