"""A local Redis Cluster of N masters (no replicas) for tests and benches: each node its own
redis-server with AOF, started on free ports, slots split evenly by `redis-cli --cluster create`.
A node can be stopped and started again on the same port and data (chaos runs)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _free_cluster_port() -> int:
    """A port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def cluster_tools() -> tuple[str, str] | None:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return None if server is None or cli is None else (server, cli)


class LocalCluster:
    def __init__(self, nodes: int = 3) -> None:
        tools = cluster_tools()
        if tools is None:
            raise RuntimeError("redis-server and redis-cli are required")
        self.server, self.cli = tools
        self.root = Path(tempfile.mkdtemp(prefix="linli-cluster-"))
        self.ports = [_free_cluster_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes

    def _spawn(self, index: int) -> None:
        port = self.ports[index]
        node = self.root / str(port)
        node.mkdir(exist_ok=True)
        self.procs[index] = subprocess.Popen([
            self.server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
            "--cluster-config-file", str(node / "nodes.conf"), "--dir", str(node),
            "--appendonly", "yes", "--save", "", "--logfile", str(node / "log"),
        ])
        self._wait_ping(port)

    def start(self) -> list[int]:
        try:
            for index in range(len(self.ports)):
                self._spawn(index)
            subprocess.run([self.cli, "--cluster", "create",
                            *(f"127.0.0.1:{p}" for p in self.ports),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self.ports

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [subprocess.run([self.cli, "-p", str(port), "cluster", "info"],
                                     capture_output=True, text=True, check=False).stdout
                      for port in self.ports]
            if all("cluster_state:ok" in info for info in states):
                return
            time.sleep(0.2)
        raise RuntimeError("cluster never reached cluster_state:ok")

    def restart(self, index: int) -> None:
        """Stop one node (SIGTERM: its AOF is flushed) and start it on the same port and data."""
        proc = self.procs[index]
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        self._spawn(index)
        self.wait_ok()

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs if proc is not None]

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_ping(self, port: int) -> None:
        for _ in range(200):
            out = subprocess.run([self.cli, "-p", str(port), "ping"], capture_output=True,
                                 text=True, check=False).stdout
            if "PONG" in out:
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis node {port} did not start")
