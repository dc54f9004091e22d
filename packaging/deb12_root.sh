# Sourced (not run) by the tests that put the amd64 package in a clean Debian 12 root and boot it under systemd
# 252 with systemd-nspawn (packaging/install_test.sh, packaging/firstboot_test.sh; boot_test.sh makes the same
# root its own way). As root, from the repository's top folder. Each function says what it sets; nothing here
# leaves a file behind once deb12_cleanup has run (the caller's EXIT trap calls it).
#   deb12_require_nspawn        exit 2 with one line unless root; installs systemd-nspawn and debootstrap
#   deb12_package [REV REV2]    UMBRA_DEB_N (and UMBRA_DEB_N1: REV2): the packages given, or built into a folder
#                               removed on the way out
#   deb12_root                  deb12_dir: a fresh copy of the cached debootstrap root ($UMBRA_DEB12_BASE)
#   deb12_chroot CMD...         CMD in the root (not booted), with /proc and /dev
#   deb12_boot LOG ARGS...      boots the root (nspawn ARGS...): deb12_nspawn (its pid), deb12_init (PID 1's)
#   in_ct CMD...                CMD inside the booted container (nsenter, at most 120 s)
#   deb12_wait_running          waits for `systemctl is-system-running`: deb12_state (running, degraded, ...)
#   deb12_poweroff              powers the container off from a transient unit of its own systemd, waits for it
#   deb12_cleanup               stops the container, unmounts, removes the root and the folder deb12_package made
deb12_base="${UMBRA_DEB12_BASE:-/var/tmp/umbra-deb12-base}"
deb12_mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
deb12_dist="" deb12_dir="" deb12_nspawn="" deb12_init="" deb12_state=""

deb12_require_nspawn() {
  [ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, systemd-nspawn)" >&2; exit 2; }
  local want=""
  command -v systemd-nspawn >/dev/null || want="$want systemd-container"
  command -v debootstrap >/dev/null || want="$want debootstrap"
  [ -z "$want" ] && return 0
  echo "installing Debian's$want"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $want >/dev/null; } \
    || { echo "could not install$want (apt-get failed)" >&2; exit 2; }
}

deb12_package() {  # deb12_package [REV...]: revision 1 (or each REV) built, unless UMBRA_DEB_N names one
  [ -n "${UMBRA_DEB_N:-}" ] && return
  deb12_dist="$(mktemp -d /var/tmp/umbra-debs.XXXX)"
  local rev
  for rev in "${@:-1}"; do UMBRA_DEB_OUT="$deb12_dist" UMBRA_DEB_REVISION="$rev" bash packaging/build.sh amd64 >/dev/null; done
  UMBRA_DEB_N="$(ls "$deb12_dist"/umbra_*-"${1:-1}"_amd64.deb)"
  [ -z "${2:-}" ] || UMBRA_DEB_N1="$(ls "$deb12_dist"/umbra_*-"$2"_amd64.deb)"
}

deb12_root() {
  if [ ! -x "$deb12_base/usr/bin/python3" ]; then
    rm -rf "$deb12_base.new"
    local t0; t0=$(date +%s)
    debootstrap --variant=minbase --include=python3,python3-venv,systemd bookworm "$deb12_base.new" \
      "$deb12_mirror" >/dev/null
    echo "debootstrap (minbase + python3, python3-venv, systemd): $(( $(date +%s) - t0 )) s"
    mv "$deb12_base.new" "$deb12_base"
  fi
  deb12_dir="$(mktemp -d /var/tmp/umbra-root.XXXX)"
  cp -a "$deb12_base/." "$deb12_dir/"
}

deb12_chroot() {
  mount -t proc proc "$deb12_dir/proc"; mount --rbind /dev "$deb12_dir/dev"
  local rc=0
  chroot "$deb12_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
  umount -l "$deb12_dir/dev" "$deb12_dir/proc"
  return "$rc"
}

deb12_boot() {  # deb12_boot LOG [nspawn args]: no systemd on the host: no scope (--keep-unit), no machined
  local log="$1"; shift
  systemd-nspawn --keep-unit --register=no --quiet -D "$deb12_dir" "$@" -b --console=pipe > "$log" 2>&1 &
  deb12_nspawn=$!
  deb12_init=""
  for _ in $(seq 120); do
    deb12_init="$(pgrep -P "$deb12_nspawn" -x systemd || true)"
    [ -n "$deb12_init" ] && return 0
    kill -0 "$deb12_nspawn" 2>/dev/null || break
    sleep 1
  done
  echo "no systemd started in the container:"; cat "$log"; return 1
}

# nsenter for a bounded time: a command in the container that a shutdown stops would otherwise hold this script
in_ct() {
  timeout -k 5 120 nsenter -t "$deb12_init" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}

deb12_wait_running() {
  deb12_state=""
  for _ in $(seq 120); do
    deb12_state="$(in_ct systemctl is-system-running 2>/dev/null || true)"
    case "$deb12_state" in running|degraded) return 0 ;; esac
    sleep 1
  done
}

deb12_wait_gone() {  # deb12_wait_gone SECONDS: 0 once nspawn has exited (its code in deb12_rc), else 1
  local i
  for i in $(seq "$1"); do
    kill -0 "$deb12_nspawn" 2>/dev/null || { deb12_rc=0; wait "$deb12_nspawn" || deb12_rc=$?; deb12_nspawn=""; return 0; }
    sleep 1
  done
  return 1
}

deb12_poweroff() {
  # from a transient unit of the container's systemd, not from nsenter here: the shutdown stops every process in
  # the container, and an nsenter child stopped that way would keep nsenter (and this script) waiting
  in_ct systemd-run --quiet --no-block --unit=deb12-poweroff.service systemctl poweroff || true
  deb12_wait_gone 90 && return 0
  kill -TERM "$deb12_nspawn" 2>/dev/null || true  # nspawn asks the container's systemd to power off
  deb12_wait_gone 30 && return 0
  kill -KILL "$deb12_nspawn" 2>/dev/null || true
  deb12_wait_gone 10 || true
  return 1
}

deb12_cleanup() {
  [ -z "$deb12_nspawn" ] || deb12_poweroff || true
  if [ -n "$deb12_dir" ]; then
    for m in data dev/pts dev proc sys; do mountpoint -q "$deb12_dir/$m" && umount -l "$deb12_dir/$m"; done
    rm -rf "$deb12_dir" "$deb12_dir".*  # and what a script kept beside it (its .log, .before, ...)
  fi
  [ -z "$deb12_dist" ] || rm -rf "$deb12_dist"
}
