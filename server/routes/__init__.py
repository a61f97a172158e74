"""HTTP route tables, one module per area (WHIP and WHEP included); the app factory and the
components (server/*_component.py) install them."""
