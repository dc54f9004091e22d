#!/usr/bin/env bash
# The amd64 package in a clean Debian 12 root (debootstrap, Debian's packages), as root on this machine:
#   bash packaging/install_test.sh        # builds N (rev 1) and N+1 (rev 2) unless UMBRA_DEB_N / UMBRA_DEB_N1 name them
# Prints: debootstrap's time, what dpkg -i made (user, groups, config, state folder, units), `umbra run` of the
# bench config (bench/configs/pets09.toml, data bind-mounted read-only) as the umbra user, the upgrade N -> N+1
# (config and state kept), and what purge leaves behind. The clean root is cached in $UMBRA_DEB12_BASE.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR="$PWD"
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
data="${UMBRA_DATA_DIR:-$ROOT_DIR/../shared/data}"
. packaging/deb12_root.sh
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
deb12_package 1 2  # N (rev 1) and N+1 (rev 2)
trap deb12_cleanup EXIT
deb12_root
root="$deb12_dir"
mount -t proc proc "$root/proc"; mount --rbind /sys "$root/sys"; mount --rbind /dev "$root/dev"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
(cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev \) -prune -o -print | sort) > "$root.before"

echo "== dpkg -i $(basename "$UMBRA_DEB_N")"
cp "$UMBRA_DEB_N" "$UMBRA_DEB_N1" "$root/tmp/"
t0=$(date +%s)
in_root dpkg -i "/tmp/$(basename "$UMBRA_DEB_N")" >/dev/null
echo "installed in $(( $(date +%s) - t0 )) s"
echo "user: $(in_root id umbra)"
echo "login shell: $(in_root getent passwd umbra | cut -d: -f7); password: $(in_root getent shadow umbra | cut -d: -f2)"
echo "config: $(in_root stat -c '%A %U:%G %n' /etc/umbra/sensor.toml)"
echo "state: $(in_root stat -c '%A %U:%G %n' /var/lib/umbra /var/lib/umbra/provisioning | tr '\n' ' ')"
echo "current: /opt/umbra/current -> $(readlink "$root/opt/umbra/current") -> $(readlink "$root/opt/umbra/slots/current")"
echo "slots: $(in_root stat -c '%U:%G' /opt/umbra/slots) $(in_root cat /opt/umbra/slots/boot.json)"
echo "units: $(cd "$root/lib/systemd/system" && ls umbra* | tr '\n' ' ')"
echo "enabled: $(cd "$root/etc/systemd/system" && find . -name 'umbra*' | sort | tr '\n' ' ')"
echo "device state: $(in_root runuser -u umbra -- /opt/umbra/current/bin/umbra-device state)"
(cd "$root/lib/systemd/system" && systemd-analyze verify --root="$root" umbra.service umbra-ota-check.service \
  umbra-ota-check.timer umbra-provision.service umbra-boot-switch.path umbra-boot-switch.service && echo "systemd-analyze verify --root (installed units): clean")

echo "== umbra run bench/configs/pets09.toml as umbra"
mkdir -p "$root/data" "$root/srv/bench/bench/configs" "$root/srv/bench/out"
mount --bind "$data" "$root/data"; mount -o remount,bind,ro "$root/data"
cp bench/configs/pets09.toml "$root/srv/bench/bench/configs/"
in_root chown -R umbra:umbra /srv/bench
t0=$(date +%s)
in_root runuser -u umbra -- /usr/bin/env HOME=/var/lib/umbra UMBRA_DATA_DIR=/data \
  UMBRA_MODEL_DIR=/usr/share/umbra/models /opt/umbra/current/bin/umbra run \
  --config /srv/bench/bench/configs/pets09.toml > "$root.run.out" 2> "$root.run.err" || {
  echo "umbra run FAILED:"; tail -20 "$root.run.err"; exit 1; }
echo "umbra run: exit 0 in $(( $(date +%s) - t0 )) s; its last log lines:"; tail -n 3 "$root.run.err" | cut -c1-200
# the run's records and state go under its state_dir: the default, ~/.local/state/umbra of the umbra user
echo "outputs:"; in_root sh -c 'stat -c "  %U:%G %s bytes %n" /var/lib/umbra/.local/state/umbra/*'
umount "$root/data"; rmdir "$root/data"; rm -rf "$root/srv/bench"

echo "== upgrade to $(basename "$UMBRA_DEB_N1")"
echo '# changed by the maker' >> "$root/etc/umbra/sensor.toml"
echo '{"state": "configured"}' > "$root/var/lib/umbra/provisioning/state.json"
in_root chown umbra:umbra /var/lib/umbra/provisioning/state.json
cfg_before=$(sha256sum < "$root/etc/umbra/sensor.toml")
in_root dpkg -i "/tmp/$(basename "$UMBRA_DEB_N1")" >/dev/null
[ "$(sha256sum < "$root/etc/umbra/sensor.toml")" = "$cfg_before" ] && echo "config kept (the maker's change is there)"
grep -q configured "$root/var/lib/umbra/provisioning/state.json" && echo "state kept: $(cat "$root/var/lib/umbra/provisioning/state.json")"
echo "current: /opt/umbra/current -> $(readlink "$root/opt/umbra/current") -> $(readlink "$root/opt/umbra/slots/current"); slot-a holds: $(ls "$root/opt/umbra/slots/slot-a" | tr '\n' ' ')"
in_root /opt/umbra/current/bin/umbra --help >/dev/null && echo "the new venv runs"

echo "== dpkg -i during an OTA trial (slot b installed, not yet booted)"
state="$root/opt/umbra/slots/boot.json"
cp -p "$state" "$root.boot.json"
printf '{"booted": "a", "committed": "a", "last_rollback": null, "tries": 0, "trying": "b"}' > "$state"
trial_before=$(sha256sum < "$state")
if in_root dpkg -i "/tmp/$(basename "$UMBRA_DEB_N1")" > "$root.trial.out" 2>&1; then
  echo "dpkg -i during a trial: NOT refused"; exit 1
fi
echo "dpkg -i during a trial: refused: $(grep -o 'umbra: an OTA trial.*' "$root.trial.out" | cut -c1-120)"
[ "$(sha256sum < "$state")" = "$trial_before" ] && echo "trial state untouched; dpkg has: $(in_root dpkg-query -W -f='${Version} ${db:Status-Abbrev}' umbra)"
mv "$root.boot.json" "$state"; rm -f "$root.trial.out"

echo "== dpkg --purge umbra"
rm -f "$root/tmp/"umbra_*.deb
in_root dpkg --purge umbra >/dev/null
(cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev \) -prune -o -print | sort) > "$root.after"
left="$(comm -13 "$root.before" "$root.after" | grep -v -E '^\./(var/lib/dpkg|var/log|var/cache|var/lib/systemd/deb-systemd-helper)' || true)"
echo "left behind (beyond dpkg's own records and logs):"; echo "${left:-  nothing}" | sed 's/^/  /'
rm -f "$root.before" "$root.after" "$root.run.out" "$root.run.err"
