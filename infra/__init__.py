"""Infrastructure below every other package: the database and its unit of work, settings, task
lifecycle, clock, token verification, limits. It imports nothing of the packages above it."""
