# RLS iron CDS Hooks service.
#   docker build -t rls-iron-cds .
#   docker run -p 8000:8000 \
#     -e CDS_TRUSTED_CLIENTS=/config/trusted-clients.yaml -v "$PWD/config:/config:ro" \
#     -e CDS_PUBLIC_URL=https://cds.example.org -e CDS_PATIENT_KEY_SECRET=... rls-iron-cds
# Production mode (the default here) verifies every caller's JWT: it refuses to start without
# CDS_TRUSTED_CLIENTS. See docs/developer-guide.md ("Docker") for every setting.

# --- build: compile the wheels (durable-rules has a C extension) into a virtualenv -------------
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY fhir_mappings ./fhir_mappings
RUN pip install .
# The service reads rules/ (and the test page examples/) beside its source, at run time.
COPY rules ./rules
COPY examples ./examples

# --- runtime: no compiler, non-root ------------------------------------------------------------
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    CDS_MODE=production \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8000
RUN groupadd --system --gid 10001 cds \
 && useradd --system --uid 10001 --gid cds --home-dir /app --no-create-home --shell /usr/sbin/nologin cds
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# Source and rules stay root-owned (read-only to the service); only var/ (SQLite, spill files) is writable.
RUN mkdir -p /app/var && chown cds:cds /app/var
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CDS_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["cds-service"]
CMD ["serve", "--host", "0.0.0.0", "--workers", "2"]
