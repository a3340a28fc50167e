#!/usr/bin/env bash
# Install PostgreSQL server binaries from Debian for the real-Airflow test harness
# (tests/realairflow). The harness runs its own private cluster with initdb/pg_ctl from
# /usr/lib/postgresql/*/bin, so only the binaries are needed; the distro's default
# cluster is never started. Idempotent: does nothing when initdb is already present.
set -euo pipefail

have_initdb() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have_initdb; then
    echo "install-postgres: already installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-postgres: need root (or sudo) to apt-get install postgresql" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d / missing init system make the package's own service start fail harmlessly;
# the harness never uses that cluster.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >/dev/null

if ! have_initdb; then
    echo "install-postgres: initdb still missing after install" >&2
    exit 1
fi
echo "install-postgres: installed $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
