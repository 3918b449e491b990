"""The processes a benchmark runs against, and reading its outputs back.

The emulator runs as its own ``python -m devtools.ai_emulator`` process (Azurite is a
Node process anyway), so serving responses never competes for the GIL of the process
being measured. Every measured scenario is a child ``python -m bench.run --child …``
whose last stdout line is ``RESULT {json}``: its peak RSS is its own.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from azure.storage.blob import BlobServiceClient

__all__ = [
    "ROOT", "EmulatorProcess", "OutputCount", "count_outputs", "drop_container", "process_cpu_seconds", "run_child",
]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class EmulatorProcess:
    """``python -m devtools.ai_emulator`` on a free port, empty, with the service's size limits.

    The rate limit is off (the benchmark measures throughput, not throttling); result
    limits (500,000 rows / 64 MB) and 5 concurrent queries stay as the service has them.
    """

    token: str = "bench-token"  # the local emulator's dev token
    app_id: str = "bench-app"
    extra: list[str] = field(default_factory=list)  # more CLI options (later ones win: --rate-limit 200)
    url: str = ""
    proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    _log: Any = field(default=None, repr=False)

    def start(self) -> EmulatorProcess:
        self._log = tempfile.NamedTemporaryFile(prefix="bench-emulator-", suffix=".log", delete=False)  # noqa: SIM115
        args = [
            sys.executable, "-m", "devtools.ai_emulator", "--port", "0", "--no-seeder", "--app-id", self.app_id,
            "--api-key", "", "--token", self.token, "--rate-limit", "0", "--max-concurrent", "5", *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(  # fixed argv, no shell
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"emulator did not start (see {self._log.name}): {line!r}")
        self.url = line
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator has used so far (0.0 once stopped)."""
        return process_cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``/_emulator/<path>``; raises on a non-2xx answer."""
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=600)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from ``/proc`` (0.0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(
    scenario: str, spec: dict[str, Any], *, timeout: float = 900, module: str = "bench.run"
) -> dict[str, Any]:
    """Run one scenario of ``module`` in a fresh interpreter; returns its ``RESULT`` (raises with its stderr).

    Stderr lines starting with ``PROGRESS`` are echoed as they come: long scenarios say
    how far they are.
    """
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", module, "--child", scenario, "--spec", orjson.dumps(spec).decode()]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        tail: deque[str] = deque(maxlen=200)
        reader = threading.Thread(target=_echo_progress, args=(proc, tail), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        out.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.startswith("RESULT ")]
    if code != 0 or not lines:
        raise RuntimeError(f"scenario {scenario} failed (exit {code}):\n{''.join(tail)[-4000:]}")
    result: dict[str, Any] = orjson.loads(lines[-1][len("RESULT ") :])
    return result


def _echo_progress(proc: subprocess.Popen[str], tail: deque[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        tail.append(line)
        if line.startswith("PROGRESS "):
            print(line[len("PROGRESS ") :], end="", flush=True)


@dataclass(frozen=True)
class OutputCount:
    blobs: int
    rows: int
    stored_bytes: int
    content_sha256: str  # of the decompressed JSONL/CSV (empty for Parquet)


def count_outputs(conn: str, container: str, fmt: str, prefix: str = "") -> OutputCount:
    """Count the rows the data blobs of ``container`` really hold (manifests excluded).

    JSONL.gz is streamed and decompressed (one row per ``\\n``); Parquet is downloaded to a
    temporary file and its footer read. Runs in the parent, so it adds nothing to a
    scenario's RSS.
    """
    client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    suffix = {"jsonl": ".jsonl.gz", "csv": ".csv.gz"}.get(fmt, ".parquet")
    names = sorted(n for n in client.list_blob_names(name_starts_with=prefix or None) if n.endswith(suffix))
    rows = stored = 0
    digest = hashlib.sha256()
    for name in names:
        download = client.get_blob_client(name).download_blob(max_concurrency=2)
        stored += download.size
        if fmt in ("jsonl", "csv"):  # one record per line (the bench's rows hold no line breaks)
            unzip = zlib.decompressobj(31)
            for chunk in download.chunks():
                data = unzip.decompress(chunk)
                rows += data.count(b"\n")
                digest.update(data)
            tail = unzip.flush()
            rows += tail.count(b"\n") - (fmt == "csv")  # the CSV header
            digest.update(tail)
        else:
            import pyarrow.parquet as pq

            with tempfile.NamedTemporaryFile(suffix=".parquet") as tmp:
                download.readinto(tmp)
                tmp.flush()
                rows += pq.read_metadata(tmp.name).num_rows
    return OutputCount(len(names), rows, stored, digest.hexdigest() if fmt in ("jsonl", "csv") else "")


def drop_container(conn: str, container: str) -> None:
    """Free Azurite's memory between scenarios (it keeps blobs in memory; repeats add up)."""
    BlobServiceClient.from_connection_string(conn).delete_container(container)
