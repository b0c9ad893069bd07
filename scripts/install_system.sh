#!/usr/bin/env bash
# Debian packages the test suite drives for real: nginx (the gRPC-aware proxy
# in front of the server), redis-server (the benchmarks' baselines) and
# postgresql (the shared journal). Installed only when missing; needs root,
# as CI and the development machines have. Without root, say what is missing.
set -euo pipefail
wanted=(nginx redis-server postgresql)
missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages' own services are not wanted: the tests start their own.
for service in nginx redis-server postgresql; do
  service "$service" stop >/dev/null 2>&1 || true
done
