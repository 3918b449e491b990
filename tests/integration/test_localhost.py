"""``make run`` (devtools.localhost): prints the full connection string, moves windows through queue
worker processes, and stops everything on Ctrl-C even when its stdout reader is already gone."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devtools.azurite import free_port

ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_everything_when_the_output_pipe_is_closed(tmp_path):
    """Like ``make run | tee run.log`` + Ctrl-C: tee dies first, so every later print hits a closed pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.localhost", "--port", str(free_port()), "--state", str(tmp_path),
         "--emulator-port", str(free_port()), "--workers", "1", "--every", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores SIGINT
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        assert line, "".join(lines)
        lines.append(line)
        if " rows, " in line:  # a worker process moved a window
            break
    text = "".join(lines)
    conn = re.search(r"^azurite\s+(\S+)$", text, re.MULTILINE)
    assert conn and "AccountKey=" in conn.group(1) and "TableEndpoint=" in conn.group(1)  # the whole string
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)/devstoreaccount1", conn.group(1))]
    assert len(ports) == 3 and all(_listening(p) for p in ports)
    proc.stdout.close()  # the reader is gone: the next print raises BrokenPipeError
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0
    deadline = time.monotonic() + 30
    while any(_listening(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_listening(p) for p in ports), "Azurite still runs after Ctrl-C"
    pids = [int(p) for p in re.search(r"worker pids ([\d ]+)", text).group(1).split()]
    assert pids and not [p for p in pids if Path(f"/proc/{p}").exists() and _alive(p)]


def _alive(pid: int) -> bool:
    """Running (a zombie whose parent has not reaped it yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
