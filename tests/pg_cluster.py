"""A throwaway PostgreSQL cluster for the test session, unless LINLI_TEST_POSTGRES_URL is given.

The machine image has PostgreSQL installed but not running; starting our own cluster on a
free port keeps `make test` self-sufficient. As root, the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir: Path | None = None
        self.port = _free_port()
        self._as_user: list[str] = []

    @property
    def available(self) -> bool:
        return self.bin is not None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_user, *argv], check=True, capture_output=True)

    def start(self) -> str:
        assert self.bin is not None
        self.dir = Path(tempfile.mkdtemp(prefix="linli-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "-o",
            f"-p {self.port} -h 127.0.0.1 -k {self.dir} -F -c max_connections=300 "
            "-c synchronous_commit=off -c full_page_writes=off",
            "start",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self.url
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not start")

    def stop(self) -> None:
        if self.dir is None or self.bin is None:
            return
        subprocess.run(
            [*self._as_user, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
             "stop"], capture_output=True, check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)
