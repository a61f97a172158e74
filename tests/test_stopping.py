"""Stopping a served app on signals (server/stopping.py, server/listener.run), in a real process.

A worker of `LINLI_WORKERS=2` gets Ctrl-C twice, from the terminal's process group and again
from the main process, which forwards it: the copy must not cut the stop short."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.stopping import REPEAT_WINDOW_S, SLOW_STEP_S

ROOT = Path(__file__).resolve().parents[1]


def _start(folder: Path, cleanup_s: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.stopping_app", str(folder),
                             str(cleanup_s)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (folder / "ready").exists():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    return proc


def _wait(proc: subprocess.Popen[bytes], within_s: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running after {within_s} s: {err.decode()[-2000:]}")
    return proc.returncode, err.decode()


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_repeated_signal_does_not_cut_the_cleanup_short(
        tmp_path: Path, second: signal.Signals) -> None:
    proc = _start(tmp_path, cleanup_s=SLOW_STEP_S + 0.3)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.5)  # the cleanup is running now
    os.kill(proc.pid, second)
    code, err = _wait(proc, 20)
    assert code == 0, err[-2000:]
    assert (tmp_path / "cleaned").exists(), "the cleanup was cut short"
    # The copy is ignored; the cleanup, being slow, is named in the log.
    assert '"msg": "already stopping"' in err
    assert '"msg": "slow cleanup step", "step": "main.<locals>.slow_cleanup"' in err, err


def test_a_signal_long_after_the_first_leaves_at_once(tmp_path: Path) -> None:
    """An operator pressing Ctrl-C again on a stop that takes long: the process goes now."""
    proc = _start(tmp_path, cleanup_s=60)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(REPEAT_WINDOW_S + 0.5)
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    code, err = _wait(proc, 10)
    assert code == 1 and time.monotonic() - started < 3, err[-2000:]
    assert "leaving now" in err
    assert not (tmp_path / "cleaned").exists()
