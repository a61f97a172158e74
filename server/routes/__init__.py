"""REST route tables, one module per area; the app factory installs them all."""
