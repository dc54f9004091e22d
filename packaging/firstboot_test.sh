#!/usr/bin/env bash
# First boot to running under a real systemd: the amd64 package installed in a clean Debian 12 root (debootstrap,
# cached as in install_test.sh), booted with systemd-nspawn (systemd 252 as PID 1), as root on this machine:
#   bash packaging/firstboot_test.sh    # builds the package unless UMBRA_DEB_N names it; UMBRA_HOST_PYTHON: the
#                                       # host's Python with this repository's requirements (default .venv/bin/python)
# The serial line is a cable of two joined pseudo-terminals on the host (python -m provisioning.fakepty cable), one
# end bound into the container at /dev/serial0 (the agent's --port, root:dialout 0660 as a UART is), the other
# driven by the project's factory station (`umbra provision run`) on the host. The reference cloud
# (`umbra-cloud serve`) listens on the host's 127.0.0.1 (nspawn without --private-network shares it); its fleet CA
# is the manufacturing CA here (the station signs with it; the maker's image carries its certificate as
# /etc/umbra/mfg-ca.pem), its pins and fleet root key are what the station sets, and its database takes the
# device's first batch key (fleet.json "cloud_data": the bench's way).
# The camera is a stand-in (no Pi camera): a generated video, [camera] kind = "video"; OTA is off (no update
# repository is served, so the station sets no OTA root). Prints: the units on first boot (only the agent runs),
# garbage on the line before the station speaks (one journal line), the station's run, the agent's end, the
# sensor started with the provisioned certificate, pins and config (READY=1) and its records in the cloud; then
# the container rebooted: the agent is masked (is-enabled asserted), did not start and cannot be started, a
# station gets no answer, the sensor runs again.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/deb12_root.sh
deb12_require_nspawn
PY="${UMBRA_HOST_PYTHON:-$PWD/.venv/bin/python}"
[ -x "$PY" ] || { echo "no host Python at $PY: bash bench/go.sh lint makes .venv (or set UMBRA_HOST_PYTHON)" >&2; exit 2; }
work="$(mktemp -d /var/tmp/umbra-firstboot.XXXX)"
cable_pid="" cloud_pid=""
stop_pid() { [ -z "$1" ] || { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }; }
cleanup() {
  deb12_cleanup
  stop_pid "$cable_pid"; stop_pid "$cloud_pid"
  rm -rf "$work"
}
trap cleanup EXIT
t_start=$(date +%s)

deb12_package
deb12_root
root="$deb12_dir"
cp "$UMBRA_DEB_N" "$root/tmp/"
deb12_chroot dpkg -i "/tmp/$(basename "$UMBRA_DEB_N")" >/dev/null
rm "$root/tmp/$(basename "$UMBRA_DEB_N")"
echo "installed $(basename "$UMBRA_DEB_N")"
echo "before first boot: /etc/umbra: $(ls "$root/etc/umbra" | tr '\n' ' '); /var/lib/umbra/provisioning: $(ls -A \
  "$root/var/lib/umbra/provisioning" | tr '\n' ' ')(nothing else); umbra's password: $(grep '^umbra:' "$root/etc/shadow" | cut -d: -f2)"
"$PY" packaging/scan_secrets.py "$UMBRA_DEB_N" | tail -n 1 | sed 's/^/scan_secrets: /'
echo "== the cloud on the host's 127.0.0.1"
read -r port api_port < <("$PY" -c 'import socket
s = [socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*(x.getsockname()[1] for x in s))')
"$PY" -m cloud serve --dir "$work/cloud-data" --host 127.0.0.1 --port "$port" --api-port "$api_port" > "$work/cloud.log" 2>&1 &
cloud_pid=$!
for _ in $(seq 60); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$cloud_pid" 2>/dev/null || { echo "the cloud did not start:"; cat "$work/cloud.log"; exit 1; }
  sleep 1
done
"$PY" - "$work/cloud-data" "https://127.0.0.1:$port" "$work/fleet.json" <<'PY'
import json
import sys
from pathlib import Path

from trust import pki

cloud, url, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
fleet = {"cloud_url": url, "pins": json.loads((cloud / "pki/pins.json").read_text()),
         "fleet_root_public_key": pki.root_public_b64(pki.load_root_key(cloud / "pki/fleet_root.key")),
         "cloud_data": str(cloud)}
out.write_text(json.dumps(fleet))
print(f"cloud at {url}; fleet.json: cloud_url, pins (version {fleet['pins']['payload']['version']}), fleet root key")
PY

echo "== the maker's image: its manufacturing CA certificate, the camera stand-in"
install -m 0644 "$work/cloud-data/pki/ca.pem" "$root/etc/umbra/mfg-ca.pem"
mkdir -p "$root/srv/umbra-standin"
deb12_chroot /opt/umbra/current/bin/python - /srv/umbra-standin/walk.avi /etc/umbra/sensor.toml <<'PY'
import sys
import tomllib

import cv2
import numpy as np
import tomli_w

video, path = sys.argv[1:]
out = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
assert out.isOpened(), "no MJPG writer"
for i in range(60):  # a grey room and a light box walking across it, 6 s at 10 fps
    img = np.full((480, 640, 3), 40, np.uint8)
    x = 20 + 9 * i
    cv2.rectangle(img, (x, 150), (x + 60, 330), (200, 200, 200), -1)
    out.write(img)
out.release()
with open(path, "rb") as f:
    cfg = tomllib.load(f)
cfg["camera"] = {"kind": "video", "source": video, "main_size": cfg["camera"]["main_size"]}  # every frame, unpaced
cfg["ota"]["enabled"] = False
with open(path, "w") as f:  # keeps the file's owner and mode (root:umbra 0640)
    f.write(tomli_w.dumps(cfg))
print(f"stand-in: {video} (60 frames, 10 fps); [camera] kind = \"video\"; [sync] enabled; [ota] off")
PY

echo "== the serial line: a cable of two pseudo-terminals on the host"
dialout="$(grep '^dialout:' "$root/etc/group" | cut -d: -f3)"
coproc CABLE { exec "$PY" -m provisioning.fakepty cable --owner "0:$dialout" --mode 660; }
cable_pid=$CABLE_PID
read -r device_end station_end <&"${CABLE[0]}"
echo "cable: $device_end (bound at /dev/serial0 in the container, root:dialout 0660) <-> $station_end (the station)"
bind=(--bind="$device_end:/dev/serial0")

echo "== first boot"
deb12_boot "$work/boot1.log" "${bind[@]}"
deb12_wait_running
echo "systemd $(in_ct systemctl --version | head -1 | cut -d' ' -f2) as PID 1 in the container: $deb12_state"
show() { in_ct systemctl show -p ActiveState -p SubState -p Result -p ConditionResult -p ExecMainStatus "$1" | tr '\n' ' '; }
for _ in $(seq 60); do [ "$(in_ct systemctl is-active umbra-provision.service || true)" = active ] && break; sleep 1; done
for u in umbra-provision.service umbra.service; do echo "$u: $(show "$u")"; done
echo "is-enabled umbra-provision.service (the generator's, no [Install]): $(in_ct systemctl is-enabled umbra-provision.service || true)"
echo "device state: $(in_ct runuser -u umbra -- /opt/umbra/current/bin/umbra-device state)"
echo "cgroups in the container: $(in_ct stat -fc %T /sys/fs/cgroup) ($(in_ct ls /sys/fs/cgroup | tr '\n' ' '))"
f=/sys/fs/cgroup/devices/system.slice/umbra-provision.service/devices.list
echo "the agent's device cgroup: $(in_ct sh -c "if [ -e $f ]; then tr '\n' ' ' < $f; else echo 'none (no devices \
controller in the container: DevicePolicy and DeviceAllow are not enforced here)'; fi")"
echo "the agent's status: $(in_ct systemctl show -p StatusText --value umbra-provision.service)"

echo "== garbage on the line before the station speaks"
printf 'AT\r\n+++ ATZ \x00\xff\xfe\x13\x37 login: root\x00' > "$station_end"
journal() {  # journal UNIT: what it and systemd said about it since this boot
  in_ct journalctl --sync
  in_ct journalctl --no-pager -b -o cat -u "$1" | cut -c1-170 | sed 's/^/  /'
}
for _ in $(seq 20); do journal umbra-provision.service | grep -q 'not a valid request' && break; sleep 1; done
journal umbra-provision.service | grep 'not a valid request' || echo "  (no journal line)"

echo "== the station provisions the device on $station_end"
t0=$(date +%s)
(timeout 180 "$PY" -c 'import sys; from provisioning.station_cli import main; sys.exit(main(sys.argv[1:]))' \
  run --ca "$work/cloud-data/pki" --fleet "$work/fleet.json" --log "$work/station.sqlite" --port "$station_end") \
  | sed 's/^/  /' || echo "  station exit $?"
echo "station: $(( $(date +%s) - t0 )) s"
for _ in $(seq 60); do
  case "$(in_ct systemctl is-active umbra-provision.service || true)" in active|activating|deactivating) sleep 1 ;; *) break ;; esac
done
echo "umbra-provision.service: $(show umbra-provision.service)"
echo "device state: $(in_ct runuser -u umbra -- /opt/umbra/current/bin/umbra-device state)"
echo "provisioned: $(in_ct ls /var/lib/umbra/provisioning | tr '\n' ' ')"
echo "the agent's journal:"; journal umbra-provision.service

echo "== the sensor (started by the agent's OnSuccess=)"
for _ in $(seq 90); do  # the run ends by itself at the video's last frame
  r="$(in_ct systemctl show -p Result -p ActiveState umbra.service | tr '\n' ' ')"
  case "$r" in *ActiveState=inactive*Result=success*|*Result=success*ActiveState=inactive*) \
    in_ct journalctl --no-pager -b -o cat -u umbra.service | grep -q 'umbra stopped after' && break ;; esac
  case "$r" in *ActiveState=failed*) break ;; esac
  sleep 1
done
echo "umbra.service: $(show umbra.service)"
echo "the sensor's config (umbra-device render, as the sensor's ExecStartPre renders /run/umbra/sensor.toml):"
in_ct runuser -u umbra -- /opt/umbra/current/bin/umbra-device render --out /tmp/rendered.toml >/dev/null
in_ct /opt/umbra/current/bin/python -c 'import tomllib
c = tomllib.load(open("/tmp/rendered.toml", "rb"))
print("  [device]", c["device"]); print("  [camera]", c["camera"]); print("  [sync.uploader]", c["sync"]["uploader"])
print("  [sync.tls]", {k: v[:12] + "..." if k == "fleet_root_public_key" else v for k, v in c["sync"]["tls"].items()})'
in_ct rm /tmp/rendered.toml
echo "the sensor's journal:"; journal umbra.service | grep -v -E '^  (INFO|DEBUG) ' | tail -n 25
echo "== the cloud's records"
"$PY" - "$work/cloud-data/cloud.sqlite" <<'PY'
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT device_id, schema, COUNT(*) FROM records GROUP BY device_id, schema ORDER BY 1, 2").fetchall()
for device, schema, n in rows:
    print(f"  accepted from {device}: {n} {schema}")
print(f"  batches: {db.execute('SELECT COUNT(*) FROM batches').fetchone()[0]}" if rows else "  no records")
PY

echo "== the container rebooted (powered off and booted again)"
deb12_poweroff && echo "powered off: nspawn exit $deb12_rc"
deb12_boot "$work/boot2.log" "${bind[@]}"
deb12_wait_running
echo "second boot: $deb12_state"
for _ in $(seq 30); do
  case "$(in_ct systemctl is-active umbra.service || true)" in activating) sleep 1 ;; *) break ;; esac
done
for u in umbra-provision.service umbra.service; do echo "$u: $(show "$u")"; done
echo "the sensor this boot:"; journal umbra.service | grep -E 'Started umbra|umbra stopped after|Failed' || true
# a locked device: the generator masked the agent at this boot, so nothing started it, nothing can
enabled="$(in_ct systemctl is-enabled umbra-provision.service || true)"
echo "is-enabled umbra-provision.service: $enabled"
case "$enabled" in masked|masked-runtime) ;; *) echo "FAILED: the agent is $enabled on a locked device, not masked"; exit 1 ;; esac
agent="$(in_ct systemctl show -p LoadState -p InactiveExitTimestampMonotonic umbra-provision.service | tr '\n' ' ')"
echo "umbra-provision.service this boot: $agent"
case "$agent" in *InactiveExitTimestampMonotonic=0*) ;; *) echo "FAILED: the agent started on a locked device"; exit 1 ;; esac
echo "its journal this boot: $(journal umbra-provision.service | grep -c -v -e '-- No entries --' || true) lines"
echo "systemctl start umbra-provision.service: $(in_ct systemctl start umbra-provision.service 2>&1 && echo STARTED || true)"
echo "processes with /dev/serial0 open: $(in_ct sh -c 'for f in /proc/[0-9]*/fd/*; do [ "$(readlink "$f")" = /dev/serial0 ] && echo "$f"; done' | wc -l)"
echo "a station on the locked device's line:"
(timeout 120 "$PY" -c 'import sys; from provisioning.station_cli import main; sys.exit(main(sys.argv[1:]))' \
  run --ca "$work/cloud-data/pki" --fleet "$work/fleet.json" --log "$work/station2.sqlite" --port "$station_end") \
  | sed 's/^/  /' || true
deb12_poweroff && echo "powered off: nspawn exit $deb12_rc"
echo "run time: $(( $(date +%s) - t_start )) s"
