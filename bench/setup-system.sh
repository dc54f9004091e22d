#!/usr/bin/env bash
# Installs the Debian packages listed in bench/apt-packages.txt that are missing (as root, or through sudo).
# Called by bench/go.sh before the Python set-up; does nothing when all are there.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t want < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' bench/apt-packages.txt | grep -v '^$' || true)
[ "${#want[@]}" -eq 0 ] && exit 0
missing=()
for entry in "${want[@]}"; do
  p="${entry%%:*}"; cmd="${entry#*:}"
  if [ "$cmd" != "$entry" ] && command -v "$cmd" >/dev/null; then continue; fi  # package:command, command there
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
