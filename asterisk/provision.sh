#!/usr/bin/env bash
# Build (once) the isolated Debian sid root that runs Asterisk 22 for the hotline.
#
# Bookworm has no asterisk package and sid's libc must never reach the host, so
# Asterisk lives in its own root built with debootstrap. The root is reused: a
# second run only checks it. Needs root and network access to deb.debian.org.
#
#   asterisk/provision.sh ROOT_DIR
set -euo pipefail

root=${1:?usage: asterisk/provision.sh ROOT_DIR}
stamp="$root/.hotline-provisioned"
packages=asterisk,asterisk-modules,asterisk-core-sounds-en-gsm

if [[ -f $stamp ]]; then
  echo "[asterisk] root ready: $root"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "[asterisk] building the Asterisk root needs root (debootstrap, chroot); voice is off" >&2
  exit 3
fi
if ! command -v debootstrap >/dev/null; then
  echo "[asterisk] installing debootstrap"
  apt-get install -y -q debootstrap >/dev/null
fi
echo "[asterisk] building a Debian sid root with Asterisk in $root (about a minute, 400 MB)"
rm -rf "$root"
mkdir -p "$root"
debootstrap --variant=minbase --include="$packages" sid "$root" http://deb.debian.org/debian
chroot "$root" apt-get clean
# debootstrap can leave the root's /proc mounted; a mounted /proc (its root/ and cwd/
# links lead back to /) makes every tool that walks the tree wander forever.
for mnt in proc sys dev/pts; do
  if mountpoint -q "$root/$mnt"; then umount -l "$root/$mnt" || true; fi
done
mkdir -p "$root/var/spool/asterisk/recording" "$root/run/asterisk" "$root/var/lib/hotline"
touch "$stamp"
echo "[asterisk] root ready: $root"
