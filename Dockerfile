FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server server
COPY realtime realtime
COPY media media
COPY commerce commerce
COPY web web
RUN pip install --no-cache-dir -e . && cd web && npm ci --omit=dev --no-audit --no-fund
RUN useradd --create-home linli && mkdir -p /app/var && chown linli /app/var
USER linli
EXPOSE 8080 1935
CMD ["python", "-m", "server", "serve"]
