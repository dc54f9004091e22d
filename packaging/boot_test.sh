#!/usr/bin/env bash
# The units under a real systemd: the amd64 package installed in a clean Debian 12 root (debootstrap, cached as in
# install_test.sh), booted with systemd-nspawn (systemd 252 as PID 1 of the container), as root on this machine:
#   bash packaging/boot_test.sh       # builds the package unless UMBRA_DEB_N names it; needs systemd-container
# Prints: whether the boot reached "running", each unit's state on a blank device (the agent skipped without the
# maker's CA, the sensor skipped by its ExecCondition, the OTA timer waiting), then the sensor started on a device
# marked locked: with the template as installed (the Pi camera) and no picamera2 it exits 2 with one line before
# READY=1; on a camera stand-in (a folder of generated frames, kind = "video") its ExecCondition and ExecStartPre
# (render) pass, `umbra run` sends READY=1 inside every hardening of its unit, reads the frames through the
# detector and stops at the last one. The marked state has no pins nor OTA root (it is not a real provisioning),
# so sync and OTA are off for the stand-in.
# Then the tryboot switch (umbra-boot-switch.path/.service, the umbra-boot user, no capabilities) on a stand-in
# autoboot.txt, asked by the umbra user through hal.boot.SwitchRequester: try, a refusal, garbage; the package's
# mount drop-in as systemd applies it to an fstab-generated boot-firmware.mount; the package's polkit rule as the
# container's polkitd answers it (pkcheck); `boot`, which logind refuses in any container (SetRebootParameter:
# "not supported in containers"); and `rollback`, whose Reboot, asked of logind by umbra-boot from inside the
# switch's sandbox and granted by the rule, reboots the container.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/deb12_root.sh
deb12_require_nspawn  # root, and Debian's systemd-container and debootstrap (installed when missing)
base="${UMBRA_DEB12_BASE:-/var/tmp/umbra-deb12-base}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
dist=""  # the package folder this script builds, removed on the way out (not one it was given)
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
  [ -z "$dist" ] || rm -rf "$dist"
}
trap cleanup EXIT
cp -a "$base/." "$root/"
cp "$UMBRA_DEB_N" "$root/tmp/"
mount -t proc proc "$root/proc"; mount --rbind /dev "$root/dev"
# the system bus, so systemd-logind runs (as on Raspberry Pi OS) and the boot switch's reboot goes through it;
# polkitd (the package's Recommends), which answers logind for the switch's user by the package's rule
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends dbus polkitd >/dev/null
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg -i "/tmp/$(basename "$UMBRA_DEB_N")" >/dev/null
umount -l "$root/dev" "$root/proc"
echo "installed $(basename "$UMBRA_DEB_N")"
# an fstab line for /boot/firmware, so systemd-fstab-generator makes boot-firmware.mount and the package's drop-in
# applies to it. Not the Pi's `PARTUUID=... vfat`: the generator ignores device lines in a container, and this
# machine's kernel has no vfat; noauto, never mounted: the stand-in boot partition below is a folder
echo "tmpfs /boot/firmware tmpfs defaults,noauto 0 0" >> "$root/etc/fstab"

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

echo "== the sensor on a device marked locked (not a real provisioning: no pins, no OTA root)"
p=/var/lib/umbra/provisioning
in_ct sh -c "printf '%s' '{\"state\": \"locked\", \"device_id\": \"d1\"}' > $p/state.json"
in_ct sh -c "printf '%s' '{\"cloud_url\": \"https://c.example\", \"device_id\": \"d1\", \"fleet_root_public_key\": \"$(printf 'k%.0s' $(seq 32) | base64 -w0)\"}' > $p/config.json"
in_ct chown -R umbra:umbra "$p"
invocation() { in_ct systemctl show -p InvocationID --value umbra.service; }
journal_of() {  # journal_of ID: what the unit's processes and systemd said in that one start of it
  in_ct journalctl --sync
  in_ct journalctl --no-pager -o cat "_SYSTEMD_INVOCATION_ID=$1" + "INVOCATION_ID=$1" | cut -c1-160 | sed 's/^/  /'
}
process() { in_ct systemctl show -p ExecMainCode -p ExecMainStatus -p Result umbra.service | tr '\n' ' '; }
echo "-- the template as installed: the Pi camera (kind = \"pi\"), and no picamera2 in the container"
in_ct systemctl start umbra.service 2>/dev/null || true  # Type=notify: returns once it fails before READY=1
id="$(invocation)"
echo "sensor's process: $(process)"
in_ct systemctl stop umbra.service || true  # Restart=on-failure would try again every RestartSec
journal_of "$id"
echo "-- a camera stand-in: [camera] kind = \"video\" on a folder of generated frames; sync and OTA off (no pins"
echo "   nor OTA root were provisioned, so the uploader or the OTA client would stop the run before its first frame)"
frames=/srv/umbra-standin/frames
in_ct mkdir -p "$frames"
in_ct /opt/umbra/current/bin/python - "$frames" <<'PY'
import sys
import cv2
import numpy as np
for i in range(20):  # a grey room and a light box walking across it
    img = np.full((480, 640, 3), 40, np.uint8)
    cv2.rectangle(img, (40 + 25 * i, 150), (100 + 25 * i, 330), (200, 200, 200), -1)
    assert cv2.imwrite(f"{sys.argv[1]}/{i:03d}.png", img)
PY
in_ct /opt/umbra/current/bin/python - /etc/umbra/sensor.toml "$frames" <<'PY'
import sys
import tomllib
import tomli_w
path, frames = sys.argv[1:]
with open(path, "rb") as f:
    cfg = tomllib.load(f)
cfg["camera"] = {"kind": "video", "source": frames, "main_size": cfg["camera"]["main_size"]}
cfg["sync"]["enabled"] = False
cfg["ota"]["enabled"] = False
with open(path, "w") as f:  # keeps the file's owner and mode (root:umbra 0640)
    f.write(tomli_w.dumps(cfg))
PY
echo "stand-in: $(in_ct ls "$frames" | wc -l) frames in $frames; /etc/umbra/sensor.toml [camera]: $(in_ct \
  /opt/umbra/current/bin/python -c 'import tomllib; print(tomllib.load(open("/etc/umbra/sensor.toml", "rb"))["camera"])')"
in_ct systemctl start umbra.service || true  # returns once READY=1 is heard
id="$(invocation)"
for _ in $(seq 60); do  # the loop ends by itself at the folder's last frame
  case "$(in_ct systemctl is-active umbra.service || true)" in active|activating|deactivating) sleep 1 ;; *) break ;; esac
done
echo "sensor's process: $(process)"
in_ct systemctl stop umbra.service || true
journal_of "$id"

echo "== the tryboot switch (a stand-in boot partition: a folder, not the Pi's vfat; no Pi firmware reads it)"
echo "boot-firmware.mount (from fstab, with the package's drop-in): Options=$(in_ct systemctl show -p Options --value \
  boot-firmware.mount) DropInPaths=$(in_ct systemctl show -p DropInPaths --value boot-firmware.mount)"
echo "  made by: FragmentPath=$(in_ct systemctl show -p FragmentPath --value boot-firmware.mount) What=$(in_ct \
  systemctl show -p What --value boot-firmware.mount) (the fstab line's); the fstab line's options: $(in_ct \
  awk '$2 == "/boot/firmware" { print $4 }' /etc/fstab)"
echo "umbra-boot: $(in_ct id umbra-boot)"
in_ct mkdir -p /boot/firmware
in_ct sh -c 'printf "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n" > /boot/firmware/autoboot.txt'
echo "umbra-boot-switch.service: $(in_ct systemctl show -p User -p Group -p CapabilityBoundingSet \
  umbra-boot-switch.service | tr '\n' ' ')"
in_ct systemctl restart umbra-boot-switch.path  # its ConditionPathExists was not met at boot
echo "umbra-boot-switch.path: $(show umbra-boot-switch.path)"
ask() {  # ask ACTION [SLOT]: hal.boot.SwitchRequester from the installed venv, as the umbra user
  in_ct runuser -u umbra -- /opt/umbra/current/bin/python -c \
    'import sys; from hal.boot import SwitchRequester; SwitchRequester()(*sys.argv[1:]); print("ok")' "$@" 2>&1 \
    | tail -n 1 | sed 's/^/  answer: /' || true
}
echo "try b, the boot partition root's alone (a vfat mounted without the drop-in's options):"; ask try b
# what the drop-in's vfat options give: root's and umbra-boot's, group-writable, read-only to the rest
in_ct chown root:umbra-boot /boot/firmware /boot/firmware/autoboot.txt
in_ct chmod 0775 /boot/firmware
in_ct chmod 0664 /boot/firmware/autoboot.txt
echo "try b:"; ask try b
echo "  autoboot.txt: $(in_ct cat /boot/firmware/autoboot.txt | tr '\n' ' ')"
# on this folder a new file is its writer's (on the vfat it would be root:umbra-boot 0664 by the mount options)
echo "  autoboot.txt written by: $(in_ct stat -c %U /boot/firmware/autoboot.txt)"
echo "try a (the committed slot):"; ask try a
before="$(in_ct md5sum /boot/firmware/autoboot.txt)"
in_ct runuser -u umbra -- sh -c 'echo "garbage; reboot" > /run/umbra-boot/request'
for _ in $(seq 30); do in_ct test -e /run/umbra-boot/request || break; sleep 1; done
sleep 1
echo "garbage: $(in_ct journalctl --no-pager -o cat -u umbra-boot-switch.service | grep 'umbra-boot-switch: bad request' | tail -n 1)"
[ "$before" = "$(in_ct md5sum /boot/firmware/autoboot.txt)" ] && echo "  autoboot.txt unchanged"
echo "umbra-boot-switch.path after a refusal: $(show umbra-boot-switch.path)"
echo "systemd-logind.service: $(show systemd-logind.service)"
echo "polkit, asked by pkcheck for a process of each user (the container's polkitd, the package's rule):"
for user in umbra-boot umbra; do
  for action in set-reboot-parameter reboot reboot-multiple-sessions reboot-ignore-inhibit power-off; do
    rc=0
    in_ct runuser -u "$user" -- sh -c "exec pkcheck --action-id org.freedesktop.login1.$action --process \$\$" \
      >/dev/null 2>&1 || rc=$?
    echo "  $user $action: $([ "$rc" = 0 ] && echo authorized || echo "not authorized (pkcheck exit $rc)")"
  done
done
echo "the umbra user asks logind to reboot itself: $(in_ct runuser -u umbra -- busctl call --system \
  org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager Reboot b false 2>&1 | tail -n 1)"
echo "boot (logind SetRebootParameter '0 tryboot', then Reboot, from the switch's sandbox):"; ask boot
echo "  autoboot.txt: $(in_ct cat /boot/firmware/autoboot.txt | tr '\n' ' ')"
echo "rollback ([tryboot] back to the committed slot, then logind Reboot, from the switch's sandbox):"
# asked from a transient unit of the container's systemd, not from nsenter here: the shutdown SIGSTOPs every process
# in the container while it kills them, nsenter (outside) copies its child's stop onto itself, and nothing would
# continue it, so its child would stay an unreaped zombie and the container's PID namespace would never end
in_ct systemd-run --quiet --uid=umbra --unit=umbra-ask-boot.service /opt/umbra/current/bin/python -c \
  'import sys; from hal.boot import SwitchRequester; SwitchRequester()(*sys.argv[1:]); print("ok")' rollback
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then
  echo "the container still runs 300 s after the rollback request: stopping it"
  kill "$pid"
fi
rc=0
wait "$pid" || rc=$?
pid=""
echo "container stopped: nspawn exit $rc (133: the container rebooted)"
echo "  autoboot.txt: $(tr '\n' ' ' < "$root/boot/firmware/autoboot.txt")"
echo "  the asker's last word: $(journalctl -D "$root/var/log/journal" --no-pager -o cat -u umbra-ask-boot.service \
  2>/dev/null | tail -n 1 | cut -c1-140)"
journalctl -D "$root/var/log/journal" --no-pager -o cat -u umbra-boot-switch.service 2>/dev/null \
  | grep -E "SIGSYS|denied|Failed|failed|Deactivated|Finished|reboot" | tail -n 6 | cut -c1-160 | sed 's/^/  /'
journalctl -D "$root/var/log/journal" --no-pager -o cat _PID=1 2>/dev/null | grep -E "Reached target.*Reboot|reboot" \
  | tail -n 2 | sed 's/^/  /'
