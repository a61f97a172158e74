"""Which lane a test belongs to, read from the code it runs rather than from a list of names.

`make test-fast` runs `unit` and `app` tests; everything that starts processes, real media
pipelines, WebRTC peers or Chromium is `e2e`. A test is `e2e` when its own code, any fixture it
uses, or any test-support function or class those reach (in tests/ or bench/, followed
transitively) references a heavy library or app module below, or starts a process. So a new test
module lands in the right lane without being listed anywhere, and a helper that starts using
ffmpeg moves every test that calls it out of the fast lane.

What stays trusted without reading: fixtures from pytest and its plugins (in-process), and the
session servers every `app` test shares (`TRUSTED_FIXTURES`). A test can still say
`@pytest.mark.e2e` (or `unit`/`app`) itself; that choice wins.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# Module (or module prefix) -> why a reference to it makes a test e2e.
HEAVY_MODULES: dict[str, str] = {
    "subprocess": "process", "multiprocessing": "process", "asyncio.subprocess": "process",
    "playwright": "browser",
    "aiortc": "webrtc", "aioice": "webrtc",
    "av": "media",
    # App modules whose functions run ffmpeg/ffprobe or encode media when called.
    "media.ffmpeg_bin": "media", "media.probe": "media", "media.recorder": "media",
    "media.synthetic": "media", "server.demo_stream": "media",
}
# Attribute names that start a process whatever module they are reached through.
PROCESS_CALLS = frozenset({
    "create_subprocess_exec", "create_subprocess_shell", "Popen", "fork", "forkpty",
    "posix_spawn", "spawnv", "execv", "execve",
})
# Harness code read transitively; app code (server/, media/, ...) is judged by HEAVY_MODULES.
HARNESS_PACKAGES = ("tests", "bench")
# Session servers shared by the whole app lane: the embedded Redis every in-process app test
# uses, and PostgreSQL (its tests are marked `postgres` and left out of the fast lane anyway).
TRUSTED_FIXTURES = frozenset({"redis_url", "postgres_admin_url"})


def _heavy_module(name: str) -> str | None:
    for prefix, why in HEAVY_MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            return why
    return None


def _defined_in(value: Any) -> str | None:
    """The module a global names or was defined in; None for plain data."""
    if isinstance(value, types.ModuleType):
        return value.__name__
    module = getattr(value, "__module__", None) if callable(value) else None
    return module if isinstance(module, str) else None


def _in_harness(module: str | None) -> bool:
    return module is not None and module.split(".", 1)[0] in HARNESS_PACKAGES


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions_of(obj: Any) -> Iterator[Callable[..., Any]]:
    """The plain functions behind a function, a method, a class (its and its harness bases'
    methods) or a harness module (all it defines)."""
    if isinstance(obj, types.ModuleType):
        for value in vars(obj).values():
            if getattr(value, "__module__", None) == obj.__name__:
                yield from _functions_of(value)
        return
    if isinstance(obj, type):
        inherited = [cls for cls in obj.__mro__ if _in_harness(cls.__module__)]
        for value in (value for cls in inherited for value in vars(cls).values()):
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            elif isinstance(value, property):
                yield from (f for f in (value.fget, value.fset) if f is not None)
                continue
            if isinstance(value, types.FunctionType):
                yield value
        return
    obj = inspect.unwrap(getattr(obj, "__func__", obj))
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", None)
    if inner is not None:
        yield from _functions_of(inner)
    if isinstance(obj, types.FunctionType):
        yield obj


class Classifier:
    """`reasons(obj)` is why running `obj` is e2e (empty: it is not). Each function is read once."""

    def __init__(self) -> None:
        self._direct: dict[types.FunctionType, tuple[frozenset[str], tuple[Any, ...]]] = {}

    def reasons(self, obj: Any) -> frozenset[str]:
        found: set[str] = set()
        stack = list(_functions_of(obj))
        visited: set[types.FunctionType] = set()
        while stack:
            fn = stack.pop()
            if fn in visited:
                continue
            visited.add(fn)
            direct, harness = self._read(fn)
            found |= direct
            for value in harness:
                stack.extend(_functions_of(value))
        return frozenset(found)

    def _read(self, fn: types.FunctionType) -> tuple[frozenset[str], tuple[Any, ...]]:
        """What `fn` itself references: heavy reasons, and the harness code it reaches."""
        if fn not in self._direct:
            found: set[str] = set()
            harness: list[Any] = []
            names = {name for code in _code_objects(fn.__code__) for name in code.co_names}
            for name in names:
                if name in PROCESS_CALLS:
                    found.add("process")
                why = _heavy_module(name)  # `import x.y` inside a function names the module
                if why:
                    found.add(why)
                value = fn.__globals__.get(name)
                module = _defined_in(value)
                why = _heavy_module(module) if module else None
                if why:
                    found.add(why)
                elif _in_harness(module):
                    harness.append(value)
            self._direct[fn] = (frozenset(found), tuple(harness))
        return self._direct[fn]


def fixture_functions(item: Any) -> Iterable[tuple[str, Callable[..., Any]]]:
    """(name, function) of every fixture the test uses, directly or through other fixtures.

    pytest has no public API for this at collection time; `_fixtureinfo` is guarded by
    tests/test_test_lanes.py, which fails if it stops yielding the fixtures of a known test."""
    info = getattr(item, "_fixtureinfo", None)
    for name, defs in getattr(info, "name2fixturedefs", {}).items():
        if defs:
            yield name, defs[-1].func


def e2e_reasons(item: Any, classifier: Classifier) -> frozenset[str]:
    found = set(classifier.reasons(getattr(item, "obj", None)))
    for name, func in fixture_functions(item):
        if name in TRUSTED_FIXTURES or not _in_harness(getattr(func, "__module__", None)):
            why = _heavy_module(getattr(func, "__module__", "") or "")
            if why:  # e.g. a browser plugin's fixtures
                found.add(why)
            continue
        found |= classifier.reasons(func)
    return frozenset(found)
