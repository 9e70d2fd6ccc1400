#!/usr/bin/env bash
# The suite starts its own servers (on ephemeral loopback ports, in temporary folders) from Debian's
# packages: PostgreSQL for the shared ledger, Redis for the state replicas share, Chromium for the
# dashboard's browser test, promtool (Debian's prometheus package) for the metrics check. This installs what is
# missing, as root or through sudo, so that `npm test` on a fresh Debian or Ubuntu machine needs nothing
# else.
set -euo pipefail
missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing for the tests: ${missing[*]}" >&2
as_root=()
[ "$(id -u)" -ne 0 ] && as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
