#!/usr/bin/env bash
# Installs what `make run` and `make test` need on a Debian/Ubuntu machine, if it is missing:
# uv, PostgreSQL + PostGIS, Redis, Mosquitto (with its dynamic-security plugin and
# mosquitto_ctrl), and Node.js for the dashboard. Only runs apt-get when something is missing.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }

ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
have psql || missing+=(postgresql-client)
have redis-server || missing+=(redis-server)
# Debian puts the broker in /usr/sbin, which is not on an ordinary user's PATH.
have mosquitto || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
have mosquitto_ctrl || missing+=(mosquitto-clients)
# runuser starts the servers as their own users, which only root needs (and finds: /usr/sbin).
[ "$(id -u)" -ne 0 ] || have runuser || missing+=(util-linux)
# The dashboard builds with Debian 12's Node.js 18 as well as newer ones.
have node || missing+=(nodejs)
have npm || missing+=(npm)
# PgBouncer: tests/test_pgbouncer.py runs the services through it.
have pgbouncer || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
# Monitoring and recovery tests (tests/monitoring, make drill).
have prometheus || missing+=(prometheus)
have promtool || missing+=(prometheus)
have prometheus-node-exporter || missing+=(prometheus-node-exporter)
have prometheus-postgres-exporter || missing+=(prometheus-postgres-exporter)
have prometheus-redis-exporter || missing+=(prometheus-redis-exporter)
have prometheus-blackbox-exporter || missing+=(prometheus-blackbox-exporter)
have pgbackrest || missing+=(pgbackrest)
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
  missing+=(postgis)
fi
# The dashboard's browser tests and bench run in Debian's Chromium (never a downloaded one).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# uv for every user of the machine (/usr/local/bin), so that `sudo make bootstrap` once is
# enough for an ordinary user too; a user's own uv on PATH or in ~/.local/bin also does.
need_uv=0
have uv || [ -x "$HOME/.local/bin/uv" ] || need_uv=1
[ "$(id -u)" -eq 0 ] && [ ! -x /usr/local/bin/uv ] && need_uv=1

if [ ${#missing[@]} -eq 0 ] && [ $need_uv -eq 0 ]; then
  exit 0
fi

packages=()
for item in "${missing[@]}"; do
  case "$item" in
    # PostGIS is packaged per PostgreSQL major version; pick the installed (or default) one.
    postgis) packages+=(postgis-for-pg) ;;
    *) packages+=("$item") ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "Fleet Tracker needs these system packages: ${missing[*]} $([ $need_uv -eq 1 ] && echo uv)" >&2
  echo "Run this once as root (or with sudo), then run make again:" >&2
  echo "    sudo make bootstrap" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_list=()
for p in "${packages[@]}"; do [ "$p" != postgis-for-pg ] && apt_list+=("$p"); done
if [ ${#apt_list[@]} -gt 0 ] || [[ " ${packages[*]} " == *" postgis-for-pg "* ]]; then
  apt-get update -qq
fi
if [ ${#apt_list[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${apt_list[@]}"
fi
if [[ " ${packages[*]} " == *" postgis-for-pg "* ]]; then
  pg_major=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  apt-get install -y -qq --no-install-recommends "postgresql-${pg_major}-postgis-3"
fi

if [ $need_uv -eq 1 ]; then
  have pip3 || have pip || apt-get install -y -qq --no-install-recommends python3-pip python3-venv
  python3 -c 'import uv' 2>/dev/null || python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
  install -m 0755 "$(python3 -c 'import uv; print(uv.find_uv_bin())')" /usr/local/bin/uv
fi
