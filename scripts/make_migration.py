"""Autogenerate an Alembic migration against a scratch SQLite database at the current head.

usage: python scripts/make_migration.py <rev_id> "<message>" [--branch LABEL] [--head REV]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev_id")
    parser.add_argument("message")
    parser.add_argument("--head", default="heads")
    parser.add_argument("--branch", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.db")
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(ROOT / "server" / "migrations"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            command.revision(
                cfg, message=args.message, autogenerate=True, rev_id=args.rev_id,
                head=args.head, branch_label=args.branch,
            )


if __name__ == "__main__":
    main()
