#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks run for real, when their binaries are missing.
set -euo pipefail
declare -A wanted=(
  [prometheus]=/usr/bin/prometheus
  [prometheus-alertmanager]=/usr/bin/prometheus-alertmanager
  [prometheus-pushgateway]=/usr/bin/prometheus-pushgateway
  [prometheus-blackbox-exporter]=/usr/bin/prometheus-blackbox-exporter
  [prometheus-node-exporter]=/usr/bin/prometheus-node-exporter
  [fping]=/usr/bin/fping
  [iproute2]=/usr/sbin/ip
  [docker-compose]=/usr/bin/docker-compose
  [nginx]=/usr/sbin/nginx
  [victoria-metrics]=/usr/bin/victoria-metrics
)
missing=()
for package in "${!wanted[@]}"; do
  [ -x "${wanted[$package]}" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps the Prometheus packages from pulling in extra daemons.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; the tests run their own copies on other ports.
for service in prometheus prometheus-alertmanager prometheus-pushgateway prometheus-blackbox-exporter prometheus-node-exporter nginx \
    victoria-metrics vmagent vmalert vmauth; do
  command -v systemctl >/dev/null && $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
done
