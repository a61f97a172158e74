"""`python -m server serve` as a real subprocess, for crash tests and benchmarks."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from commerce.accounts import Principal, Role
from server.auth import TokenService


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTaken(RuntimeError):
    """The port picked for a server was taken by another process before the server bound it."""


class ServerProcess:
    """Starts the server with REDIS_URL/DATABASE_URL given; `kill()` is a SIGKILL."""

    def __init__(self, data_dir: Path, redis_url: str, database_url: str, workers: int = 1,
                 admin_password: str = "admin-password-123",  # noqa: S107 - test-only
                 extra_env: dict[str, str] | None = None,
                 ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.secret = secrets.token_urlsafe(40)
        self.admin_password = admin_password
        self.env = {
            **os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url,
            "PORT": str(self.port), "LINLI_DEMO": "0", "LINLI_SECRET_KEY": self.secret,
            "LINLI_ADMIN_PASSWORD": admin_password, "LINLI_DATA_DIR": str(data_dir),
            "LINLI_WORKERS": str(workers), "LINLI_LOG_LEVEL": "WARNING", **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.tokens = TokenService(self.secret, 3600)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, user_id: int, role: Role = Role.VIEWER) -> str:
        return self.tokens.issue(Principal(user_id, f"u{user_id}", role))

    def start(self, timeout_s: float = 60.0) -> None:
        # The free port was only free when it was picked: another test's server may have taken
        # it since. A first start then moves to another port; a restart keeps its port.
        for attempt in range(3):
            try:
                self._start(timeout_s)
                self._started = True
                return
            except PortTaken:
                if getattr(self, "_started", False) or attempt == 2:
                    raise
                self.port = free_port()
                self.env["PORT"] = str(self.port)

    def _start(self, timeout_s: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "Address already in use" in tail and f"{self.port}" in tail:
                    raise PortTaken(tail)
                raise RuntimeError(f"server exited {self.proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not become healthy: " + self.log_tail())

    def log_tail(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group (every worker), no clean-up runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
