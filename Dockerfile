FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies from the hash-pinned lock first (a layer that survives code changes), then the
# package itself without resolving anything again.
COPY requirements/lock.txt requirements/lock.txt
RUN pip install --no-cache-dir --require-hashes -r requirements/lock.txt
COPY pyproject.toml README.md ./
COPY infra infra
COPY commerce commerce
COPY realtime realtime
COPY media media
COPY trust trust
COPY cluster cluster
COPY payments payments
COPY server server
COPY web web
RUN pip install --no-cache-dir --no-deps -e . && cd web && npm ci --omit=dev --no-audit --no-fund
RUN useradd --create-home linli && mkdir -p /app/var && chown linli /app/var
USER linli
EXPOSE 8080 1935
CMD ["python", "-m", "server", "serve"]
