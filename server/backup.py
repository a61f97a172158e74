"""Back up and restore the state of a running sale: SQL first, then Redis (docs/BACKUP.md).

Why that order: a confirmation reaches Redis (confirm.lua, with its log entry) before SQL (the
idempotent writer), so an SQL copy taken BEFORE the Redis copy holds only orders whose
confirmations the Redis copy also holds. Orders paid between the two copies are in the restored
log but not in the restored SQL; `reconcile --repair` writes them from the log (the writer is
idempotent: a hold has at most one order), and the books balance again. The other order would
restore orders Redis never sold, and Redis would sell those units a second time.

Each copy is of one instant: SQLite through its online backup API (one step), PostgreSQL through
`pg_dump` (one repeatable-read snapshot), Redis through one Lua script that DUMPs every key
atomically (`backup_snapshot.lua`; a standalone Redis, as Linli runs it).
"""

from __future__ import annotations

import asyncio
import base64
import glob
import json
import shutil
import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text

from infra.settings import Settings
from server.database import Database

MANIFEST = "manifest.json"
REDIS_FILE = "redis.jsonl"
SQLITE_FILE = "linli.sqlite3"
PG_FILE = "linli.pgdump"
RESTORE_BATCH = 500


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says why and what to do."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _redis(settings: Settings) -> Redis:
    if settings.redis_url is None:
        raise BackupError("REDIS_URL must name the running Redis (the embedded one lives and dies "
                          "with `serve`: stop it and copy the data dir instead)")
    return Redis.from_url(settings.redis_url.get_secret_value())


def _sqlite_path(settings: Settings) -> Path | None:
    url = settings.sqlalchemy_url
    return Path(url.split(":///", 1)[1]) if url.startswith("sqlite") else None


def _pg_url(settings: Settings) -> str:
    """The libpq URL of the configured database (pg_dump knows no `+asyncpg`)."""
    return "postgresql://" + settings.sqlalchemy_url.split("://", 1)[1]


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools")
    return candidates[0]


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} exited {proc.returncode}: {err.decode()[-2000:]}")


# --- backup ----------------------------------------------------------------------------------

async def backup(settings: Settings, folder: Path) -> dict[str, Any]:
    """SQL, then Redis, then the manifest (its presence marks a complete backup)."""
    _prepare(folder)
    redis = _redis(settings)
    try:
        await redis.ping()
        sql = await dump_sql(settings, folder)
        state = await dump_redis(redis, folder)
    finally:
        await redis.aclose()
    return write_manifest(folder, sql, state)


def write_manifest(folder: Path, sql: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Last: a folder with a manifest holds a complete backup."""
    manifest = {"format": 1, "created_at": _now(), "sql": sql, "redis": state}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _prepare(folder: Path) -> None:
    if (folder / MANIFEST).exists():
        raise BackupError(f"{folder} already holds a backup")
    folder.mkdir(parents=True, exist_ok=True)


async def dump_sql(settings: Settings, folder: Path) -> dict[str, Any]:
    """One consistent copy of the database: SQLite's backup API or `pg_dump -Fc`."""
    started = _now()
    path = _sqlite_path(settings)
    if path is not None:
        if not path.exists():
            raise BackupError(f"no SQLite database at {path}")
        await asyncio.to_thread(_sqlite_copy, path, folder / SQLITE_FILE)
        kind, name = "sqlite", SQLITE_FILE
    else:
        await _run(_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                   "--file", str(folder / PG_FILE), "--dbname", _pg_url(settings))
        kind, name = "postgresql", PG_FILE
    return {"kind": kind, "file": name, "started_at": started, "finished_at": _now()}


def _sqlite_copy(source: Path, target: Path) -> None:
    # One step (pages=-1): the copy is of one instant even while the app keeps writing.
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=-1)
    finally:
        dst.close()
        src.close()


async def dump_redis(redis: Redis, folder: Path) -> dict[str, Any]:
    """Every key with its TTL and DUMP payload, read atomically, one JSON line per key."""
    source = resources.files("server").joinpath("backup_snapshot.lua").read_text(encoding="utf-8")
    at = _now()
    flat: list[Any] = await redis.eval(source, 0)
    count = _write_keys(folder / REDIS_FILE, flat)
    info: Any = await redis.info("server")
    return {"file": REDIS_FILE, "keys": count, "at": at,
            "redis_version": str(info.get("redis_version", ""))}


def _write_keys(path: Path, flat: list[Any]) -> int:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(0, len(flat), 3):
            key, pttl, dump = flat[i], int(flat[i + 1]), flat[i + 2]
            fh.write(json.dumps({"k": base64.b64encode(key).decode(), "t": pttl,
                                 "d": base64.b64encode(dump).decode()}) + "\n")
    return len(flat) // 3


# --- restore ---------------------------------------------------------------------------------

async def restore(settings: Settings, folder: Path, force: bool = False) -> dict[str, Any]:
    """Into the configured (empty, unless `force`) database and Redis; reconcile afterwards."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{folder} holds no complete backup ({MANIFEST} missing)") from None
    redis = _redis(settings)
    try:
        if not force and await redis.dbsize():
            raise BackupError("the target Redis is not empty (use --force to replace its data)")
        await restore_sql(settings, folder, manifest["sql"], force)
        keys = await restore_redis(redis, folder, force)
    finally:
        await redis.aclose()
    return {"sql": manifest["sql"]["kind"], "redis_keys": keys, "backup_of": manifest["created_at"]}


async def restore_sql(settings: Settings, folder: Path, sql: dict[str, Any], force: bool) -> None:
    path = _sqlite_path(settings)
    if (path is not None) != (sql["kind"] == "sqlite"):
        raise BackupError(f"the backup is of {sql['kind']}; DATABASE_URL names the other kind")
    if path is not None:
        if path.exists() and not force:
            raise BackupError(f"{path} exists (use --force to replace it)")
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        await asyncio.to_thread(_sqlite_copy, folder / sql["file"], path)
        return
    database = Database(settings.sqlalchemy_url)
    try:
        async with database.session() as db:
            tables = int((await db.execute(text(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ))).scalar_one())
    finally:
        await database.close()
    if tables and not force:
        raise BackupError("the target database has tables (use --force to replace them)")
    argv = [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction"]
    if tables:
        argv += ["--clean", "--if-exists"]
    await _run(*argv, "--dbname", _pg_url(settings), str(folder / sql["file"]))


async def restore_redis(redis: Redis, folder: Path, force: bool) -> int:
    """RESTORE every key with what was left of its TTL at the backup; returns how many."""
    if force:
        await redis.flushdb()
    entries = (folder / REDIS_FILE).read_text(encoding="utf-8").splitlines()
    count = 0
    for start in range(0, len(entries), RESTORE_BATCH):
        count += await _restore_batch(redis, [json.loads(line) for line in
                                              entries[start:start + RESTORE_BATCH]])
    return count


async def _restore_batch(redis: Redis, batch: list[dict[str, Any]]) -> int:
    if not batch:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for entry in batch:
            ttl = max(0, int(entry["t"]))  # -1: no expiry, RESTORE's 0
            pipe.restore(base64.b64decode(entry["k"]), ttl, base64.b64decode(entry["d"]),
                         replace=True)
        await pipe.execute()
    return len(batch)
