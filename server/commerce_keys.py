"""App keys of the commerce component (kept apart so route modules and the component share them)."""

from __future__ import annotations

from aiohttp import web

from commerce.flash_sale.checkout import Checkout

checkout_key = web.AppKey("checkout", Checkout)
