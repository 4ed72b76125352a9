# One image for every Facet service: `facet ingest | aggregator | trainer --region R | recommender --region R`.
# Size estimate: ~1.1 GB (python:3.11-slim ~130 MB + CPU-only torch ~750 MB + the rest ~200 MB).
# The CUDA build of torch would add several GB: the CPU wheel index is pinned below.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/facet
# Dependencies first, so code changes do not rebuild the torch layer.
COPY constraints.txt ./
RUN /opt/facet/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
RUN /opt/facet/bin/pip install -c constraints.txt . \
    && find /opt/facet -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/facet/lib/python3.11/site-packages/torch/include

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="facet" \
      org.opencontainers.image.description="Asynchronous federated learning for jewelry recommendations"
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin facet \
    && mkdir -p /var/lib/facet && chown facet /var/lib/facet
COPY --from=build /opt/facet /opt/facet
ENV PATH=/opt/facet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FACET_LOG_JSON=true \
    FACET_HTTP_PORT=8080
USER 10001
WORKDIR /var/lib/facet
EXPOSE 8080
# Every service serves /healthz on FACET_HTTP_PORT; it fails when the consume loop stalls.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['FACET_HTTP_PORT'], timeout=3)"]
ENTRYPOINT ["facet"]
CMD ["--help"]
