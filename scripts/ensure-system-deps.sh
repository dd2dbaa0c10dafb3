#!/usr/bin/env bash
# Make sure the machine has what the embedded services need: PostgreSQL server binaries.
set -euo pipefail
if [[ -n "${RESGATE_PG_DSN:-}" ]]; then exit 0; fi
if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  exit 0
fi
if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found: installing them with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  exit 0
fi
echo "PostgreSQL server binaries not found. Install them (apt-get install postgresql) or set RESGATE_PG_DSN." >&2
exit 2
