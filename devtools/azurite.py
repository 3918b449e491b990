"""Start and stop Azurite (the real Azure Storage emulator) on loopback for tests and the dev stack."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ACCOUNT", "KEY", "Azurite", "free_port"]

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"azurite exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"azurite did not listen on {port}")


@dataclass
class Azurite:
    """One Azurite process (blob + queue + table) on free loopback ports.

    ``location`` set → persistence on disk (survives a restart); unset → in memory.
    """

    location: str | None = None
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: Path | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT}"
        )

    @property
    def pid(self) -> int:
        """The Node process's id (0 when not running): benchmarks read its CPU time."""
        return self.proc.pid if self.proc is not None else 0

    def start(self, timeout: float = 60.0) -> Azurite:
        binary = ROOT / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            found = shutil.which("azurite")
            if not found:
                raise RuntimeError("azurite is not installed: run `npm ci` in the project root (make deps does)")
            binary = Path(found)
        self.blob_port = self.blob_port or free_port()
        self.queue_port = self.queue_port or free_port()
        self.table_port = self.table_port or free_port()
        args = [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.table_port),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
        ]
        if self.location:
            Path(self.location).mkdir(parents=True, exist_ok=True)
            args += ["--location", self.location]
        else:
            args += ["--inMemoryPersistence"]
        fd, log = tempfile.mkstemp(prefix="azurite-", suffix=".log")
        self._log = Path(log)
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            args, stdout=fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        os.close(fd)
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.table_port):
            _wait_port(port, deadline, self.proc)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if self._log is not None:
            self._log.unlink(missing_ok=True)  # the emulator's own log; kept only while it runs
            self._log = None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def restart(self) -> None:
        """Stop and start on the same ports (data survives only with ``location``)."""
        self.stop()
        self.start()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
