#!/bin/bash
# vm/guest-smoke.sh — runs INSIDE the zfsync test VM (vm/run.sh vm/guest-smoke.sh).
# Checks that the guest has a working OpenZFS 2.x: two file-backed pools on /scratch, a full
# and an incremental `zfs send | zfs recv` between them, with the data compared. Prints OK
# and exits 0, or exits non-zero at the first failure.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "zfs version"
zfs version
# both the userland and the loaded kernel module must be 2.x
zfs version | grep -qE '^zfs-2\.' || fail "userland is not OpenZFS 2.x"
grep -qE '^2\.' /sys/module/zfs/version || fail "kernel module is not OpenZFS 2.x"

step "two file-backed pools"
truncate -s 1G /scratch/src.img /scratch/dst.img
zpool create -f -O mountpoint=/src smoke_src /scratch/src.img
zpool create -f -O mountpoint=/dst smoke_dst /scratch/dst.img
zfs create smoke_src/data
dd if=/dev/urandom of=/src/data/a bs=1M count=8 status=none
zfs snapshot smoke_src/data@s1

step "full send | recv"
# readonly=on on the target: reading its files (atime) would otherwise count as a modification
# and make the incremental receive below fail without -F
zfs send smoke_src/data@s1 | zfs recv -u -o readonly=on smoke_dst/data
zfs mount smoke_dst/data
cmp /src/data/a /dst/data/a || fail "full stream: data differs"

step "incremental send | recv"
echo second > /src/data/b
dd if=/dev/urandom of=/src/data/a bs=1M count=1 seek=2 conv=notrunc status=none
zfs snapshot smoke_src/data@s2
zfs send -i @s1 smoke_src/data@s2 | zfs recv smoke_dst/data
cmp /src/data/a /dst/data/a || fail "incremental: a differs"
cmp /src/data/b /dst/data/b || fail "incremental: b differs"
src_guids=$(zfs list -H -t snapshot -o guid -s createtxg smoke_src/data)
dst_guids=$(zfs list -H -t snapshot -o guid -s createtxg smoke_dst/data)
[ "$src_guids" = "$dst_guids" ] || fail "snapshot guids differ: $src_guids / $dst_guids"
zfs list -H -t snapshot -o name,guid -r smoke_dst

zpool destroy smoke_dst
zpool destroy smoke_src
echo OK
