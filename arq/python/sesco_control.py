"""Sesco's control port for Python applications, with the standard library only.

A process that Sesco runs finds a Unix socket in ``SESCO_CONTROL_SOCKET`` and its session
token in ``SESCO_SESSION_TOKEN``; this module speaks the control protocol on it
(``docs/control-protocol.md``: newline-delimited JSON, versions negotiated)::

    import sesco_control

    port = sesco_control.ControlPort()          # registers, or raises ControlError
    while True:
        setpoint = port.next_setpoint(timeout=0.1)
        if setpoint:
            rate = setpoint.value("frame_rate", 10)
            port.ack(setpoint)                   # adapted: Sesco may now shrink
        do_one_unit_of_work(rate)

A lower set-point must be acknowledged once the application has adapted: the reservation
shrinks only after that. A higher one comes after the reservation has grown.

If Lrmd restarts, the port reconnects to the same socket and registers again by itself.
"""

import json
import os
import select
import socket
import time

__all__ = ["ControlError", "ControlPort", "SetPoint", "VERSIONS"]
__version__ = "0.1.0"

#: The protocol versions this module speaks.
VERSIONS = (1, 2)
#: The longest line either side sends, newline excluded.
MAX_LINE_BYTES = 16 * 1024

ENV_SOCKET = "SESCO_CONTROL_SOCKET"
ENV_TOKEN = "SESCO_SESSION_TOKEN"


class ControlError(Exception):
    """The port could not register, or was closed; ``code`` is the protocol's code."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SetPoint:
    """A set-point: one level per QoS dimension, and the reservation behind it."""

    def __init__(self, line):
        self.sequence = int(line["sequence"])
        #: ``initial``, ``lower``, ``raise`` or ``lateral``.
        self.direction = line.get("direction", "")
        #: Dicts with ``dimension``, ``level``, ``index`` (0 = lowest) and ``value``.
        self.levels = list(line.get("levels", []))
        #: ``cpu_class``, ``cpus``, ``memory_max_bytes``, ``memory_min_bytes``, ``pids_max``.
        self.reservation = dict(line.get("reservation", {}))

    def level(self, dimension):
        """The level chosen for ``dimension`` (a dict), or None."""
        return next((l for l in self.levels if l.get("dimension") == dimension), None)

    def value(self, dimension, default=None):
        """The numeric value of the level chosen for ``dimension``."""
        level = self.level(dimension)
        return default if level is None else level.get("value", default)

    def __str__(self):
        return ",".join(f"{l['dimension']}={l['level']}" for l in self.levels)


class ControlPort:
    """A registered control port.

    ``path`` and ``token`` default to the environment Lrmd set up; ``versions`` are the
    protocol versions offered (the highest both sides speak is chosen); ``patience`` is
    how long to wait for Lrmd and Sesco before giving up.
    """

    def __init__(self, path=None, token=None, versions=VERSIONS, agent=None, patience=30.0):
        self.path = path or _env(ENV_SOCKET)
        self.token = token or _env(ENV_TOKEN)
        self.versions = list(versions)
        self.agent = agent or f"sesco_control.py {__version__}"
        self.patience = patience
        self.version = None
        self.session = None
        self.process = None
        #: Whether Lrmd's link to Sesco is up (told by version 2).
        self.sesco_connected = True
        #: The last non-fatal error line from Lrmd (a dict), if any.
        self.last_error = None
        self._sock = None
        self._buffer = bytearray()
        self._setpoints = []
        self._pongs = {}
        self._ping_id = 0
        self._connect(time.monotonic() + patience)

    # -- the connection ------------------------------------------------------------------

    def _connect(self, deadline):
        delay = 0.05
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.path)
                break
            except OSError as e:
                sock.close()
                if time.monotonic() + delay > deadline:
                    raise ControlError("unavailable", f"cannot reach Lrmd at {self.path}: {e}")
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._sock = sock
        self._buffer.clear()
        self._send({"type": "hello", "versions": self.versions, "token": self.token,
                    "agent": self.agent})
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlError("unavailable", "no answer to the hello")
            lines = self._read(remaining)
            for i, line in enumerate(lines):
                kind = line.get("type")
                if kind == "welcome":
                    self.version = line["version"]
                    self.session = line.get("session")
                    self.process = line.get("process")
                    # What came with the welcome (the first set-point) is kept.
                    for rest in lines[i + 1:]:
                        self._take(rest)
                    return
                if kind == "error":
                    self.close()
                    raise ControlError(line.get("code", "error"), line.get("message", ""))
                self._take(line)

    def _send(self, message):
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            self._sock.sendall(data)
        except OSError:
            self._reconnect()
            self._sock.sendall(data)

    def _reconnect(self):
        if self._sock:
            self._sock.close()
        self._connect(time.monotonic() + self.patience)

    def _read(self, timeout):
        """Lines that arrive within ``timeout`` seconds (at least one read attempt)."""
        ready, _, _ = select.select([self._sock], [], [], max(timeout, 0))
        if not ready:
            return []
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionResetError("Lrmd closed the control socket")
        self._buffer += data
        lines = []
        while b"\n" in self._buffer:
            raw, _, rest = bytes(self._buffer).partition(b"\n")
            self._buffer = bytearray(rest)
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
        if len(self._buffer) > MAX_LINE_BYTES:
            self._buffer.clear()
        return lines

    def _take(self, line):
        kind = line.get("type")
        if kind == "setpoint":
            self._setpoints.append(SetPoint(line))
        elif kind == "pong":
            self._pongs[line.get("id")] = line.get("sesco_connected", False)
        elif kind == "sesco":
            self.sesco_connected = bool(line.get("connected"))
        elif kind == "error":
            if line.get("fatal"):
                raise ControlError(line.get("code", "error"), line.get("message", ""))
            self.last_error = line
        # Types from newer versions are skipped.

    def _pump(self, timeout):
        try:
            for line in self._read(timeout):
                self._take(line)
        except OSError:
            # Lrmd restarted: the socket comes back at the same path.
            self._reconnect()

    # -- the application's side ----------------------------------------------------------

    def next_setpoint(self, timeout=None):
        """The newest set-point received, waiting up to ``timeout`` seconds (None: until
        one comes). Older ones it supersedes are acknowledged with it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pump(0)
        while not self._setpoints:
            remaining = 3600 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            self._pump(remaining)
        if not self._setpoints:
            return None
        newest = self._setpoints[-1]
        self._setpoints.clear()
        return newest

    def ack(self, setpoint):
        """Tells Sesco the application has adapted to ``setpoint``."""
        self._send({"type": "ack", "sequence": setpoint.sequence})

    def report(self, **achieved):
        """Tells Sesco the QoS achieved, e.g. ``report(frame_rate=29.7)``."""
        self._send({"type": "report", "achieved": {k: float(v) for k, v in achieved.items()}})

    def ping(self, timeout=5.0):
        """Whether Lrmd answers and is connected to Sesco (version 2)."""
        self._ping_id += 1
        self._send({"type": "ping", "id": self._ping_id})
        deadline = time.monotonic() + timeout
        while self._ping_id not in self._pongs and time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())
        return self._pongs.pop(self._ping_id, False)

    def fileno(self):
        """The socket, for ``select``: readable when a line from Lrmd is waiting."""
        return self._sock.fileno()

    def close(self):
        if self._sock:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise ControlError("missing_env", f"{name} is not set: is this process running in a Sesco session?")
    return value
