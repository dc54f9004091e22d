#!/usr/bin/env bash
# The units under a real systemd: the amd64 package installed in a clean Debian 12 root (debootstrap, cached as in
# install_test.sh), booted with systemd-nspawn (systemd 252 as PID 1 of the container), as root on this machine:
#   bash packaging/boot_test.sh       # builds the package unless UMBRA_DEB_N names it; needs systemd-container
# Prints: whether the boot reached "running", each unit's state on a blank device (the agent skipped without the
# maker's CA, the sensor skipped by its ExecCondition, the OTA timer waiting), then the sensor started on a device
# marked locked: its ExecCondition and ExecStartPre (render) pass and `umbra run` sends READY=1 inside every
# hardening of its unit. The marked state has no pins (it is not a real provisioning), so the sensor then stops.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, systemd-nspawn)" >&2; exit 2; }
command -v systemd-nspawn >/dev/null || { echo "systemd-nspawn not found: apt-get install systemd-container" >&2; exit 2; }
base="${UMBRA_DEB12_BASE:-/var/tmp/umbra-deb12-base}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if [ -z "${UMBRA_DEB_N:-}" ]; then
  dist="$(mktemp -d /var/tmp/umbra-debs.XXXX)"
  UMBRA_DEB_OUT="$dist" UMBRA_DEB_REVISION=1 bash packaging/build.sh amd64 >/dev/null
  UMBRA_DEB_N="$(ls "$dist"/umbra_*-1_amd64.deb)"
fi
if [ ! -x "$base/usr/bin/python3" ]; then
  rm -rf "$base.new"
  debootstrap --variant=minbase --include=python3,python3-venv,systemd bookworm "$base.new" "$mirror" >/dev/null
  mv "$base.new" "$base"
fi
root="$(mktemp -d /var/tmp/umbra-boot.XXXX)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for m in dev proc; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  rm -rf "$root" "$root.log"
}
trap cleanup EXIT
cp -a "$base/." "$root/"
cp "$UMBRA_DEB_N" "$root/tmp/"
mount -t proc proc "$root/proc"; mount --rbind /dev "$root/dev"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg -i "/tmp/$(basename "$UMBRA_DEB_N")" >/dev/null
umount -l "$root/dev" "$root/proc"
echo "installed $(basename "$UMBRA_DEB_N")"

# no systemd on the host: no scope unit (--keep-unit) and no machined (--register=no)
systemd-nspawn --keep-unit --register=no --quiet -D "$root" -b --console=pipe > "$root.log" 2>&1 &
pid=$!
init=""
for _ in $(seq 120); do
  init="$(pgrep -P "$pid" -x systemd || true)"
  [ -n "$init" ] && break
  sleep 1
done
[ -n "$init" ] || { echo "no systemd started in the container:"; cat "$root.log"; exit 1; }
in_ct() { nsenter -t "$init" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
state=""
for _ in $(seq 120); do
  state="$(in_ct systemctl is-system-running 2>/dev/null || true)"
  case "$state" in running|degraded) break ;; esac
  sleep 1
done
echo "systemd $(in_ct systemctl --version | head -1 | cut -d' ' -f2) as PID 1 in the container: $state"
show() { in_ct systemctl show -p ActiveState -p SubState -p Result -p ConditionResult "$1" | tr '\n' ' '; }
echo "== a blank device"
for u in umbra-provision.service umbra.service umbra-ota-check.timer; do echo "$u: $(show "$u")"; done

echo "== the sensor on a device marked locked (not a real provisioning: no pins)"
p=/var/lib/umbra/provisioning
in_ct sh -c "printf '%s' '{\"state\": \"locked\", \"device_id\": \"d1\"}' > $p/state.json"
in_ct sh -c "printf '%s' '{\"cloud_url\": \"https://c.example\", \"device_id\": \"d1\", \"fleet_root_public_key\": \"$(printf 'k%.0s' $(seq 32) | base64 -w0)\"}' > $p/config.json"
in_ct chown -R umbra:umbra "$p"
in_ct systemctl start umbra.service || true
sleep 5
in_ct systemctl stop umbra.service || true
in_ct journalctl --no-pager -o cat -u umbra.service | grep -E "wrote /run/umbra|Started umbra.service|exited|SIGSYS|denied" \
  | head -n 6 | cut -c1-160 | sed 's/^/  /'
echo "sensor's process: $(in_ct systemctl show -p ExecMainStatus -p ExecMainCode umbra.service | tr '\n' ' ')"
in_ct systemctl poweroff || true
wait "$pid" || true
pid=""
echo "container powered off"
