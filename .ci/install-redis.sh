#!/usr/bin/env bash
# Install redis-server from Debian for the CeleryExecutor deployment tests (tests/realairflow/test_celery.py).
# The harness starts its own private redis-server on a free loopback port as the Celery broker, so only the
# binary is needed; the distro's own service is never used. Idempotent: does nothing when redis-server exists.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "install-redis: already installed: $(redis-server --version | head -c 60)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-redis: need root (or sudo) to apt-get install redis-server" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Without an init system the package's own service start fails harmlessly; the harness never uses it.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null

if ! command -v redis-server >/dev/null 2>&1; then
    echo "install-redis: redis-server still missing after install" >&2
    exit 1
fi
echo "install-redis: installed $(redis-server --version | head -c 60)"
