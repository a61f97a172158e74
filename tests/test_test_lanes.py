"""Lanes are read from what a test runs: heavy code found anywhere a test reaches makes it e2e,
so nothing that starts processes, media pipelines, WebRTC peers or Chromium lands in
`make test-fast`, and a new module needs no list entry to land right."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection

from media.probe import probe
from tests.conftest import Api
from tests.lanes import Classifier, fixture_functions

TESTS = Path(__file__).resolve().parent
# Whole modules that start servers, ffmpeg, WebRTC peers or Chromium in every test.
HEAVY_MODULES = frozenset({
    "test_backup_restore", "test_browser_hls_live", "test_browser_live", "test_browser_media",
    "test_browser_moderation", "test_browser_sale", "test_commerce_crash", "test_fuzz_api",
    "test_media_cors", "test_media_hls", "test_media_hls_whip", "test_media_seats",
    "test_media_takeover", "test_media_webrtc", "test_media_webrtc_browser",
    "test_media_webrtc_demo", "test_media_webrtc_errors", "test_realtime_js", "test_redis_cluster",
    "test_replay_crash", "test_replay_reconnect", "test_replay_resume", "test_replay_wall_clock",
    "test_rtmp_ingest",
})
# Single heavy tests in modules whose other tests are in-process.
HEAVY_TESTS = frozenset({
    "test_browser_pages::test_every_page_loads_without_csp_errors",
    "test_chaos::test_chaos_soak_keeps_every_invariant",
    "test_realtime_cluster::test_two_processes_share_a_room_and_survive_a_killed_listener",
    "test_security_headers::test_no_password_token_stream_key_or_signature_in_logs",
    "test_trace_chain::test_verify_trace_cli_process",
})


def _uses_a_process() -> None:
    subprocess.run(["true"], check=True)


async def _spawns_through_asyncio() -> None:
    await asyncio.create_subprocess_exec("true")


def _opens_chromium_lazily() -> None:
    from playwright.async_api import async_playwright  # noqa: F401


def _makes_a_peer() -> None:
    RTCPeerConnection()


def _probes_media(path: Path) -> None:
    probe(path)


class _Launcher:
    def start(self) -> None:
        _uses_a_process()


class _QuietLauncher(_Launcher):
    pass


def _through_a_helper_class() -> None:
    _Launcher().start()


def _through_an_inherited_method() -> None:
    _QuietLauncher().start()


def _ping(depth: int) -> None:
    if depth:
        _pong(depth - 1)


def _pong(depth: int) -> None:
    if depth:
        _ping(depth - 1)
    _uses_a_process()


async def _in_process(api: Api) -> None:
    await api.client.get("/api/health")


# Marked by hand: it names the heavy samples above without running them.
@pytest.mark.unit
def test_heavy_code_is_found_through_helpers_classes_and_cycles() -> None:
    classify = Classifier()
    assert classify.reasons(_uses_a_process) == {"process"}
    assert classify.reasons(_spawns_through_asyncio) == {"process"}
    assert classify.reasons(_opens_chromium_lazily) == {"browser"}
    assert classify.reasons(_makes_a_peer) == {"webrtc"}
    assert classify.reasons(_probes_media) == {"media"}
    assert classify.reasons(_through_a_helper_class) == {"process"}
    assert classify.reasons(_through_an_inherited_method) == {"process"}
    # Whichever end of a cycle is read first, the other still sees the heavy call.
    assert classify.reasons(_ping) == {"process"}
    assert Classifier().reasons(_pong) == {"process"}
    assert classify.reasons(_ping) == {"process"}


def test_in_process_code_is_not_heavy() -> None:
    assert Classifier().reasons(_in_process) == frozenset()


def test_fixtures_of_a_test_are_visible_at_collection(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Lanes read fixtures through pytest's private `_fixtureinfo`; an upgrade that moves it
    would put every test in the unit lane."""
    names = dict(fixture_functions(request.node))
    assert {"tmp_path", "tmp_path_factory"} <= set(names), (
        f"pytest {pytest.__version__}: Item._fixtureinfo.name2fixturedefs no longer lists a "
        f"test's fixtures; tests/lanes.py fixture_functions needs another way")
    assert callable(names["tmp_path"])


def test_every_collected_test_has_one_lane_and_heavy_ones_are_e2e(
        request: pytest.FixtureRequest) -> None:
    """Over whatever this run collected: all of it under `make test`, the fast lane under
    `make test-fast` (where no heavy test may appear at all)."""
    wrong = []
    for item in request.session.items:
        lanes = [lane for lane in ("unit", "app", "e2e") if item.get_closest_marker(lane)]
        name = f"{item.path.stem}::{getattr(item, 'originalname', item.name)}"
        heavy = item.path.stem in HEAVY_MODULES or name in HEAVY_TESTS
        if len(lanes) != 1 or (heavy and lanes != ["e2e"]):
            wrong.append((item.nodeid, lanes))
        if item.path.stem.startswith("test_browser_") and heavy and not item.get_closest_marker(
                "browser"):
            wrong.append((item.nodeid, ["no browser marker"]))
    assert not wrong, wrong


def test_the_expected_heavy_tests_exist() -> None:
    missing = sorted(m for m in HEAVY_MODULES if not (TESTS / f"{m}.py").exists())
    missing += sorted(t for t in HEAVY_TESTS
                      if f"def {t.partition('::')[2]}(" not in (
                          TESTS / f"{t.partition('::')[0]}.py").read_text())
    assert not missing, f"renamed or removed; update this test: {missing}"
