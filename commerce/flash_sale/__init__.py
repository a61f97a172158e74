"""One flash sale: its stock in Redis (store + Lua), its lifecycle (create, open, close), the
checkout path (reserve, pay, release), the hold sweeper, the order log and reconciliation."""
