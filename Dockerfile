# realtime-cascade serve: stateless workers; shared state in Redis ([state] redis_url or
# REALTIME_CASCADE_REDIS_URL). Written and linted here, not built: this machine cannot pull
# base images (see docs/scaling.md).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY realtime_cascade ./realtime_cascade
COPY demos ./demos
RUN pip install '.[scale]' && useradd --system --uid 10001 cascade

USER cascade
EXPOSE 8765
# Workers: one per core by default when Redis is configured; --workers N to pin it.
# A container binds 0.0.0.0, so it must have API keys (server.api_keys in a mounted config, or
# keys with policies); set --config to that file.
ENTRYPOINT ["realtime-cascade", "serve", "--host", "0.0.0.0", "--port", "8765"]
HEALTHCHECK --interval=5s --timeout=2s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2)" || exit 1
