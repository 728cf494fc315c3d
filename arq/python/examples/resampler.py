#!/usr/bin/env python3
"""An audio resampler that adapts to Sesco's set-points (the Python demo application).

Every 100 ms it resamples ``sample_rate / 10`` samples through a windowed-sinc filter
whose length grows with the ``quality`` dimension's value (1 if the variant has none).
On each set-point it prints one JSON line: what it was told, and the CPU and memory
limits the kernel enforces on it at that moment (read from its own cgroup), so the order
"told, then shrunk" and "grown, then told" can be seen; then it acknowledges. It reports
the sample rate it achieves every second.
"""

import json
import math
import sys
import time

import sesco_control


def cgroup_dir(controller):
    """This process's cgroup directory holding ``controller`` ("" for cgroup v2)."""
    mounts = []
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                mounts.append(("", fields[1]))
            elif fields[2] == "cgroup":
                mounts.append((fields[3], fields[1]))
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            wanted = controllers == "" if controller == "" else controller in controllers.split(",")
            if not wanted:
                continue
            for options, point in mounts:
                if (options == "") if controller == "" else controller in options.split(","):
                    return point + path
    return None


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def kernel_cpu():
    """The CPU cap the kernel enforces on this process now, in CPUs."""
    v2 = cgroup_dir("")
    cpu_max = read(f"{v2}/cpu.max") if v2 else None
    if cpu_max and cpu_max.split()[0] != "max":
        quota, period = cpu_max.split()
        return float(quota) / float(period)
    v1 = cgroup_dir("cpu")
    quota = read(f"{v1}/cpu.cfs_quota_us") if v1 else None
    period = read(f"{v1}/cpu.cfs_period_us") if v1 else None
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def resample(block, taps):
    """Windowed-sinc interpolation of ``block`` at half-sample offsets."""
    out = []
    half = taps // 2
    for i in range(len(block)):
        acc = 0.0
        for k in range(-half, half):
            j = i + k
            if 0 <= j < len(block):
                x = (k + 0.5) * math.pi
                acc += block[j] * math.sin(x) / x * (0.5 + 0.5 * math.cos(x / half))
        out.append(acc)
    return out


def main():
    try:
        port = sesco_control.ControlPort()
    except sesco_control.ControlError as e:
        print(f"resampler: {e}", file=sys.stderr)
        return 2
    rate, quality, done, since = 1000.0, 1.0, 0, time.monotonic()
    phase = 0.0
    while True:
        setpoint = port.next_setpoint(timeout=0.0)
        if setpoint:
            rate = setpoint.value("sample_rate", rate)
            quality = setpoint.value("quality", quality)
            print(json.dumps({
                "sequence": setpoint.sequence,
                "direction": setpoint.direction.capitalize(),
                "setpoint": str(setpoint),
                "reservation_cpu": setpoint.reservation.get("cpus"),
                "kernel_cpu": kernel_cpu(),
                "protocol": port.version,
            }), flush=True)
            port.ack(setpoint)
        tick = time.monotonic()
        n = max(1, int(rate / 10))
        block = [math.sin(phase + i * 0.01) for i in range(n)]
        phase += n * 0.01
        resample(block, max(2, int(4 * quality)))
        done += n
        if tick - since >= 1.0:
            port.report(sample_rate=done / (tick - since))
            done, since = 0, tick
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))


if __name__ == "__main__":
    sys.exit(main())
