#!/usr/bin/env bash
# Build Umbra's Debian packages, offline-installable, from a clone of the repository:
#   bash packaging/build.sh [amd64|arm64|all]     # -> packaging/dist/umbra_<version>-<rev>_<arch>.deb
# Environment: UMBRA_DEB_REVISION (default 1: the N+1 of an upgrade test is 2), UMBRA_DEB_OUT (default
# packaging/dist), UMBRA_WHEEL_CACHE (default packaging/build/wheelhouse: kept between builds, hashes checked).
# Needs python3 (3.11+) with pip, dpkg-deb; network to PyPI for the locked wheels and the build backend, and to
# the models' official URLs unless the models are found locally ($UMBRA_DATA_DIR/models, ../shared/data/models).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
which="${1:-all}"
case "$which" in amd64|arm64) arches="$which" ;; all) arches="amd64 arm64" ;;
  *) echo "usage: bash packaging/build.sh [amd64|arm64|all]" >&2; exit 2 ;; esac
command -v dpkg-deb >/dev/null || { echo "dpkg-deb not found: apt-get install dpkg" >&2; exit 2; }
PY="${PYTHON:-python3}"
rev="${UMBRA_DEB_REVISION:-1}"
out="${UMBRA_DEB_OUT:-$ROOT/packaging/dist}"
cache="${UMBRA_WHEEL_CACHE:-$ROOT/packaging/build/wheelhouse}"
version="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
debver="$version-$rev"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# the project's own wheel (pure Python: one for both targets), built from a clean copy of the tracked tree
git ls-files -z | tar --null -T - -cf - | (mkdir -p "$work/src" && tar -xf - -C "$work/src")
"$PY" -m pip wheel --quiet --no-deps --disable-pip-version-check -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/umbra-*.whl)"

for arch in $arches; do
  root="$work/$arch"
  wh="$root/usr/lib/umbra/wheelhouse"
  mkdir -p "$wh" "$root/DEBIAN"
  "$PY" packaging/wheelhouse.py fetch "$arch" "$cache/$arch" >/dev/null
  "$PY" packaging/wheelhouse.py check "$arch" "$cache/$arch" >/dev/null  # a lock missing a dependency fails here
  while read -r name _ _ file; do cp "$cache/$arch/$file" "$wh/"; done < <("$PY" packaging/wheelhouse.py show "$arch" | sed '$d')
  cp "$wheel" "$wh/"
  { grep -v '^#' "packaging/lock/$arch.txt"
    echo "umbra==$version --hash=sha256:$(sha256sum "$wheel" | cut -d' ' -f1)  # $(basename "$wheel")"; } > "$wh/requirements.lock"
  install -D -m 0644 -t "$root/lib/systemd/system" packaging/systemd/*.service packaging/systemd/*.timer \
    packaging/systemd/*.path
  # the agent's enablement: wanted while the device is not locked, masked once it is (the unit has no [Install])
  install -D -m 0755 packaging/systemd/umbra-provision-generator \
    "$root/lib/systemd/system-generators/umbra-provision-generator"
  # the boot switch that umbra-boot-switch.service runs as umbra-boot: root's files here, never the umbra-written
  # venv; the boot partition's mount options for it, and its polkit rule
  install -D -m 0644 -t "$root/lib/systemd/system/boot-firmware.mount.d" \
    packaging/systemd/boot-firmware.mount.d/umbra-boot-switch.conf
  install -D -m 0644 -t "$root/usr/share/polkit-1/rules.d" packaging/polkit/10-umbra-boot-switch.rules
  install -D -m 0755 hal/tryboot_switch.py "$root/usr/lib/umbra/boot-switch/umbra-boot-switch"
  install -D -m 0644 trust/files.py "$root/usr/lib/umbra/boot-switch/trust/files.py"
  install -D -m 0644 /dev/null "$root/usr/lib/umbra/boot-switch/trust/__init__.py"
  install -D -m 0644 packaging/debian/sysusers.conf "$root/usr/lib/sysusers.d/umbra.conf"
  install -D -m 0644 packaging/debian/tmpfiles.conf "$root/usr/lib/tmpfiles.d/umbra.conf"
  install -D -m 0644 packaging/sensor.toml "$root/usr/share/umbra/sensor.toml.template"
  "$PY" packaging/ship_models.py "$root/usr/share/umbra/models"
  doc="$root/usr/share/doc/umbra"
  install -D -m 0644 -t "$doc" docs/INSTALL.md SECURITY.md docs/SECURITY-BASELINE.md
  printf 'Umbra\nLicense: Apache-2.0\nThe wheels in /usr/lib/umbra/wheelhouse carry their own licences in their metadata.\n' > "$doc/copyright"
  printf 'umbra (%s) stable; urgency=medium\n\n  * Built from %s.\n\n -- Umbra maintainers <security@umbra.invalid>  %s\n' \
    "$debver" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" \
    | gzip -9n > "$doc/changelog.Debian.gz"
  size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
  sed -e "s/@VERSION@/$debver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/debian/control.in > "$root/DEBIAN/control"
  for s in preinst postinst prerm postrm; do
    sed "s/@VERSION@/$debver/" "packaging/debian/$s" > "$root/DEBIAN/$s"; chmod 0755 "$root/DEBIAN/$s"
  done
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  deb="$out/umbra_${debver}_${arch}.deb"
  dpkg-deb --root-owner-group -Zgzip -z1 --build "$root" "$deb" >/dev/null
  echo "built $deb ($(du -h "$deb" | cut -f1), $(ls "$wh"/*.whl | wc -l) wheels)"
done
if [[ " $arches " == *" arm64 "* ]]; then
  echo "arm64 wheelhouse (CPython 3.11, aarch64, manylinux <= 2.36):"
  "$PY" packaging/wheelhouse.py show arm64
fi
