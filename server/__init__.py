"""Linli server: wires commerce, realtime and media into one aiohttp application."""
