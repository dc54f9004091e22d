#!/bin/bash -e
# start from the previous stage's root file system (pi-gen's convention)
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
