"""The emulator served over HTTP on a loopback port: ``EmulatorCore`` plus its server's lifecycle."""

from __future__ import annotations

import logging
import threading

from .emulator import Clock, EmulatorConfig, EmulatorCore
from .server import EmulatorHTTPServer

__all__ = ["Emulator"]

log = logging.getLogger(__name__)


class Emulator(EmulatorCore):
    """Application Insights / Log Analytics query API emulator on a loopback port.

    >>> emu = Emulator(EmulatorConfig(app_id="test-app")).start()   # doctest: +SKIP
    >>> emu.generate("requests", start, end, count=500, seed=1)     # doctest: +SKIP
    >>> emu.stop()                                                   # doctest: +SKIP
    """

    def __init__(self, config: EmulatorConfig | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind ``config.host:config.port`` (0 = a free port) and serve on a daemon thread."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = EmulatorHTTPServer((self.config.host, self.config.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="ai-emulator-http",
            daemon=True,
        )
        self._thread.start()
        log.info("ai emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop the seeder and the server, closing open keep-alive connections."""
        self.stopping.set()
        self.stop_seeder()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_all_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — the engine calls ``{url}/v1/apps/{app_id}/query``."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def app_query_url(self) -> str:
        return f"{self.url}/v1/apps/{self.config.app_id}/query"

    @property
    def workspace_query_url(self) -> str:
        return f"{self.url}/v1/workspaces/{self.config.workspace_id}/query"
