"""Infrastructure below every other package: the database engine and its unit of work
(`database`) and background task lifecycle (`background`). It imports nothing of the packages
above it (docs/ARCHITECTURE.md; checked by `make lint`)."""
