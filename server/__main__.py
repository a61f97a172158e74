"""Command line: `python -m server <command>`.

serve        run the service (embedded Redis/SQLite unless REDIS_URL/DATABASE_URL are set)
create-user  create a user and print its id
token        print a bearer token for a user (for scripts)
demo         seed the demo data and print the logins
migrate      apply database migrations
reconcile    check every sale: initial = remaining + held + sold, sold = paid orders in SQL
reconcile-payments DATE  the money ledger against the payment provider's bill of that day
verify-trace re-check a batch's trace hash chain
backup       copy SQL, then Redis, of a running service into a folder (docs/BACKUP.md)
restore      put a backup into an empty database and Redis, then reconcile --repair
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from infra.settings import Settings, SettingsError
from server.app import create_app
from server.logs import configure_logging
from server.password_policy import check_admin_password


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[web.Application]:
    """Start the app's resources (not the HTTP listener) for one-shot commands."""
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        yield app
    finally:
        await runner.cleanup()


def _run(coro_fn: Callable[[web.Application], Awaitable[int]], settings: Settings) -> int:
    async def main() -> int:
        async with running_app(settings) as app:
            return await coro_fn(app)

    return asyncio.run(main())


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.serve import serve

    if args.port is not None:
        settings = settings.with_(port=args.port)
    if args.workers is not None:
        settings = settings.with_(workers=args.workers)
    serve(settings)
    return 0


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> int:
    from commerce import accounts
    from commerce.accounts import Role
    from server.keys import database_key
    from server.password_policy import REASONS, weakness
    from server.passwords import passwords_key

    password = args.password or getpass.getpass("password: ")
    reason = weakness(password, args.username)
    if reason is not None:
        print(f"weak_password ({reason}): {REASONS[reason]}", file=sys.stderr)
        return 2

    async def go(app: web.Application) -> int:
        hashed = await app[passwords_key].hash_async(password)
        async with app[database_key].session() as db:
            user = await accounts.create_user(db, args.username, hashed, Role(args.role))
        print(json.dumps({"id": user.id, "username": user.username, "role": user.role}))
        return 0

    return _run(go, settings.with_(demo=False))


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from commerce import accounts
    from server.keys import database_key, tokens_key

    async def go(app: web.Application) -> int:
        async with app[database_key].session() as db:
            user = await accounts.find_user(db, args.username)
        if user is None:
            print(f"no such user: {args.username}", file=sys.stderr)
            return 1
        print(app[tokens_key].issue(user.principal(), ttl_s=args.ttl))
        return 0

    return _run(go, settings.with_(demo=False))


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    async def go(_app: web.Application) -> int:
        print("migrations applied")
        return 0

    return _run(go, settings.with_(demo=False))


def cmd_demo(_args: argparse.Namespace, settings: Settings) -> int:
    from server.demo import print_welcome, seed_demo

    async def go(app: web.Application) -> int:
        info = await seed_demo(app)
        print_welcome(info, settings)
        return 0

    return _run(go, settings.with_(demo=False))


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from server.cli_commerce import reconcile

    return _run(lambda app: reconcile(app, args.sale, args.repair), settings.with_(demo=False))


def cmd_reconcile_payments(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import date

    from server.cli_payments import reconcile_payments

    day = date.fromisoformat(args.date)
    return _run(lambda app: reconcile_payments(app, day, args.provider), settings.with_(demo=False))


def cmd_verify_trace(args: argparse.Namespace, settings: Settings) -> int:
    from server.cli_commerce import verify_trace

    return _run(lambda app: verify_trace(app, args.batch_code), settings.with_(demo=False))


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from server.cli_commerce import backup

    return asyncio.run(backup(settings, args.folder))


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from server.cli_commerce import reconcile, restore

    code = asyncio.run(restore(settings, args.folder, args.force))
    if code:
        return code
    # Orders paid between the SQL and the Redis copy are in the log only: write them now.
    return _run(lambda app: reconcile(app, None, True), settings.with_(demo=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="Linli (邻里) server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(fn=cmd_serve)
    create = sub.add_parser("create-user", help="create a user")
    create.add_argument("username")
    create.add_argument("--role", choices=["admin", "host", "assistant", "viewer"], default="viewer")
    create.add_argument("--password", help="read from a prompt when omitted")
    create.set_defaults(fn=cmd_create_user)
    token = sub.add_parser("token", help="print a bearer token for a user")
    token.add_argument("username")
    token.add_argument("--ttl", type=int, default=None, help="seconds")
    token.set_defaults(fn=cmd_token)
    sub.add_parser("migrate", help="apply migrations").set_defaults(fn=cmd_migrate)
    sub.add_parser("demo", help="seed the demo data").set_defaults(fn=cmd_demo)
    reconcile = sub.add_parser("reconcile", help="check sales against orders")
    reconcile.add_argument("--sale", type=int, default=None)
    reconcile.add_argument("--repair", action="store_true", help="write missing orders from the log")
    reconcile.set_defaults(fn=cmd_reconcile)
    payments = sub.add_parser("reconcile-payments",
                              help="the money ledger against the provider's bill of one day")
    payments.add_argument("date", help="the bill day, YYYY-MM-DD (Asia/Shanghai)")
    payments.add_argument("--provider", default=None, help="only this provider (e.g. alipay)")
    payments.set_defaults(fn=cmd_reconcile_payments)
    verify = sub.add_parser("verify-trace", help="verify a batch's trace chain")
    verify.add_argument("batch_code", nargs="?", default=None, help="all batches when omitted")
    verify.set_defaults(fn=cmd_verify_trace)
    backup = sub.add_parser("backup", help="back up SQL and Redis (REDIS_URL, DATABASE_URL)")
    backup.add_argument("folder", type=Path)
    backup.set_defaults(fn=cmd_backup)
    restore = sub.add_parser("restore", help="restore a backup, then reconcile --repair")
    restore.add_argument("folder", type=Path)
    restore.add_argument("--force", action="store_true", help="replace a non-empty target")
    restore.set_defaults(fn=cmd_restore)

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if settings.admin_password is not None:
            check_admin_password(settings.admin_password.get_secret_value())
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    result: int = args.fn(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
