#!/bin/bash -e
# Install the Umbra package (with its Depends and Recommends from the Raspberry Pi OS archive), the maker's
# manufacturing CA certificate, and give the serial console to the provisioning agent.
deb="$(ls files/umbra_*_arm64.deb | tail -n 1)"
install -m 0644 "$deb" "${ROOTFS_DIR}/tmp/umbra.deb"
on_chroot <<CHROOT
apt-get update
apt-get install -y --install-recommends /tmp/umbra.deb
rm -f /tmp/umbra.deb
systemctl mask serial-getty@ttyAMA0.service serial-getty@serial0.service
CHROOT
install -m 0644 -o root -g root files/mfg-ca.pem "${ROOTFS_DIR}/etc/umbra/mfg-ca.pem"
# the UART on, no kernel console on it
grep -q '^enable_uart=1' "${ROOTFS_DIR}/boot/firmware/config.txt" || echo 'enable_uart=1' >> "${ROOTFS_DIR}/boot/firmware/config.txt"
sed -i 's/console=serial0,[0-9]* //' "${ROOTFS_DIR}/boot/firmware/cmdline.txt"
# the boot partition writable by the umbra-boot group alone (the tryboot switch's user; vfat has only mount-wide
# owners and masks): the same options as the package's boot-firmware.mount.d/umbra-boot-switch.conf, here for a
# `mount /boot/firmware` by hand too
sed -i -E 's|^(\S+\s+/boot/firmware\s+vfat\s+)\S+|\1defaults,uid=0,gid=umbra-boot,fmask=0113,dmask=0002|' \
  "${ROOTFS_DIR}/etc/fstab"
grep -qE '^\S+\s+/boot/firmware\s+vfat\s+defaults,uid=0,gid=umbra-boot,fmask=0113,dmask=0002\s' "${ROOTFS_DIR}/etc/fstab" ||
  { echo "stage-umbra: no /boot/firmware vfat line in the image's /etc/fstab to set the switch's options on" >&2; exit 1; }
