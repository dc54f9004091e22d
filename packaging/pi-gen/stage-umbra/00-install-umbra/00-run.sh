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
