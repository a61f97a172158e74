"""Trust: evidence behind what was sold (trace chain, QC, uploads), after-sales (claims, reviews,
NPS) and the trust dashboard. Builds on commerce/ (orders, accounts, catalog); commerce/ never
imports it."""
