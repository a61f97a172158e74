"""Commerce domain: accounts, live sessions, catalog, sales, orders, trust.

Nothing here imports aiohttp, socketio or aiortc; events leave through `commerce.events`.
"""
