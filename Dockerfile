# One image per Facet service, each with only the shared library and that service (no lab, no plots):
#   docker build --target trainer -t facet-trainer .   (likewise ingest, aggregator, recommender, insights)
# `facet-<service>` is each image's entry point: `facet-trainer --region us`, `facet-ingest`, ...
# Size estimate: ~1 GB each (python:3.11-slim ~130 MB + CPU-only torch ~750 MB + the rest ~150 MB);
# the torch layer is shared by all four. The CUDA build of torch would add several GB: the CPU wheel
# index is pinned below.

FROM python:3.11-slim AS library
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/facet
# Dependencies first, so code changes do not rebuild the torch layer.
COPY constraints.txt ./
RUN /opt/facet/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY shared shared
RUN /opt/facet/bin/pip install -c constraints.txt ./shared

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.description="Asynchronous federated learning for jewelry recommendations"
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin facet \
    && mkdir -p /var/lib/facet && chown facet /var/lib/facet
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

FROM library AS build-ingest
COPY services/ingest services/ingest
RUN /opt/facet/bin/pip install -c constraints.txt ./services/ingest \
    && find /opt/facet -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/facet/lib/python3.11/site-packages/torch/include

FROM library AS build-trainer
COPY services/trainer services/trainer
RUN /opt/facet/bin/pip install -c constraints.txt ./services/trainer \
    && find /opt/facet -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/facet/lib/python3.11/site-packages/torch/include

FROM library AS build-aggregator
COPY services/aggregator services/aggregator
RUN /opt/facet/bin/pip install -c constraints.txt ./services/aggregator \
    && find /opt/facet -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/facet/lib/python3.11/site-packages/torch/include

FROM library AS build-recommender
COPY services/recommender services/recommender
RUN /opt/facet/bin/pip install -c constraints.txt ./services/recommender \
    && find /opt/facet -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/facet/lib/python3.11/site-packages/torch/include

FROM library AS build-insights
COPY services/insights services/insights
RUN /opt/facet/bin/pip install -c constraints.txt ./services/insights \
    && find /opt/facet -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/facet/lib/python3.11/site-packages/torch/include

FROM runtime AS ingest
LABEL org.opencontainers.image.title="facet-ingest"
COPY --from=build-ingest /opt/facet /opt/facet
ENTRYPOINT ["facet-ingest"]

FROM runtime AS trainer
LABEL org.opencontainers.image.title="facet-trainer"
COPY --from=build-trainer /opt/facet /opt/facet
ENTRYPOINT ["facet-trainer"]

FROM runtime AS aggregator
LABEL org.opencontainers.image.title="facet-aggregator"
COPY --from=build-aggregator /opt/facet /opt/facet
ENTRYPOINT ["facet-aggregator"]

FROM runtime AS recommender
LABEL org.opencontainers.image.title="facet-recommender"
COPY --from=build-recommender /opt/facet /opt/facet
ENTRYPOINT ["facet-recommender"]

FROM runtime AS insights
LABEL org.opencontainers.image.title="facet-insights"
COPY --from=build-insights /opt/facet /opt/facet
ENTRYPOINT ["facet-insights"]
