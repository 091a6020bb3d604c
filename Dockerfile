# sitewatch: one image for sitewatch-exporter, sitewatch-pusher, sitewatch-receiver and sitewatch-ingest.
# docker-compose.yml builds it and gives each service its own command; on its own:
#   docker build -t sitewatch .
#   docker run --rm sitewatch sitewatch-exporter --help
# No config and no secret is built in: configs are mounted, tokens and passwords come from the
# environment (see .env.example).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /tmp/sitewatch-src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY pusher ./pusher
COPY alertmanager ./alertmanager
COPY ingress ./ingress
COPY ingest ./ingest
# tzdata (the Python package): the receiver's and the sites' time zones work even without the
# system's zoneinfo files.
RUN pip install --no-cache-dir . tzdata \
    && cd / && rm -rf /tmp/sitewatch-src

# An unprivileged user. /var/lib/sitewatch holds the receiver's outbox: a named volume mounted there
# takes this owner the first time it is used. /etc/sitewatch is where the configs are mounted.
RUN groupadd --system sitewatch \
    && useradd --system --gid sitewatch --home-dir /var/lib/sitewatch --no-create-home \
       --shell /usr/sbin/nologin sitewatch \
    && install -d -m 0750 -o sitewatch -g sitewatch /var/lib/sitewatch \
    && install -d -m 0755 /etc/sitewatch

USER sitewatch
WORKDIR /var/lib/sitewatch

# 9815: sitewatch-exporter (/metrics), 9816: sitewatch-receiver (Alertmanager webhook, /metrics),
# 9817: sitewatch-ingest (uploads, /metrics).
EXPOSE 9815 9816 9817

CMD ["sitewatch-exporter", "--help"]
