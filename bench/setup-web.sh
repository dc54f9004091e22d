#!/usr/bin/env bash
# Fetches the dashboard's charting library (Chart.js, pinned in cloud/web/package-lock.json) from the npm
# registry into cloud/web/node_modules, where the cloud serves it. Called by bench/go.sh; does nothing when
# the pinned copy is already there.
set -euo pipefail
cd "$(dirname "$0")/../cloud/web"
want="$(sed -n 's/.*"chart.js": "\(.*\)".*/\1/p' package.json)"
have="$(sed -n 's/^  "version": "\(.*\)".*/\1/p' node_modules/chart.js/package.json 2>/dev/null || true)"
if [ -f node_modules/chart.js/dist/chart.umd.min.js ] && [ "$want" = "$have" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed for the dashboard's Chart.js (Debian package npm)"; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
