"""Commerce domain: accounts, live sessions, catalog, flash sales, orders, refunds, group-buys.

Nothing here imports aiohttp, socketio or aiortc; events leave through `commerce.events`.
"""
