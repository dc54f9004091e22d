#!/usr/bin/env bash
# One command each for Umbra's two jobs, doing all of their own set-up on a fresh machine:
#   bash bench/go.sh run    # set up, then the bench run (mock camera on vtest.avi, real model, reference cloud)
#   bash bench/go.sh test   # set up, then lint (ruff), types (mypy) and the test suite
# Set-up: the Debian packages of bench/apt-packages.txt, a virtual environment in .venv with the project and its dev extra installed (skipped when
# pyproject.toml has not changed since), then the bench data checked by hash (fetched where it can be).
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-run}"; shift || true

bash bench/setup-system.sh
bash bench/setup-web.sh

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.umbra-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  # Norfair (the tracker Frigate uses) is only a comparison in bench/tracking.py. Its metadata caps rich<13
  # and numpy<2 (2.2+), which the rest of the dev tools exceed; 2.1.1 runs fine with both, so it goes in
  # without its declared pins, together with its one real dependency.
  .venv/bin/python -m pip install --quiet --no-deps 'norfair==2.1.1' 'filterpy>=1.4.5,<2'
  echo "$want" > "$stamp"
fi

.venv/bin/python -m bench.lib.data

lint() {  # ruff on the whole tree, mypy on the shipped packages and the bench (versions pinned in pyproject.toml)
  .venv/bin/ruff check . && .venv/bin/mypy firmware trust hal ota cloud provisioning models bench
}

case "$job" in
  run)  exec .venv/bin/umbra bench run "$@" ;;
  test) lint && exec .venv/bin/python -m pytest tests "$@" ;;
  lint) lint ;;
  *)    echo "usage: bash bench/go.sh run|test|lint [args...]" >&2; exit 2 ;;
esac
