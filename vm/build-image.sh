#!/bin/bash
# vm/build-image.sh [OUTDIR] — build the zfsync test VM image: a small Debian bookworm guest
# (kernel + busybox initrd + ext4 root image) with OpenZFS 2.x, booted by vm/run.sh under qemu.
#
#   OUTDIR default: /var/cache/zfsync-vm/$ZFSYNC_VM_ZFS_SUITE
#   ZFSYNC_VM_ZFS_SUITE   bookworm-backports (default: OpenZFS 2.3.x) | bookworm (OpenZFS 2.1.x)
#   ZFSYNC_VM_MIRROR      Debian mirror URI          (default: read from this host's apt sources,
#   ZFSYNC_VM_SEC_MIRROR  Debian security mirror URI  so that no host name is written here)
#   ZFSYNC_VM_REBUILD=1   build even when OUTDIR holds a valid image
#
# Caching: OUTDIR/stamp holds a key = sha256(this script + suite). When it matches and the
# image files are there, the script only makes sure qemu is installed and exits (~1 s).
# A build runs in a temporary sibling directory of OUTDIR, and the stamp is written last,
# just before that directory is renamed to OUTDIR: an interrupted build never leaves
# something that looks complete. A flock on OUTDIR.lock serialises concurrent callers;
# the second one waits, then finds the first one's image and reuses it.
#
# Needs root (apt-get, mmdebstrap --mode=root, chroot, dkms), ~2 GB free next to OUTDIR,
# and the Debian archive reachable through apt. Cold build: ~4-5 min on 2 cores, most of
# it the DKMS compile of the zfs module.
#
# Output in OUTDIR: vmlinux (uncompressed kernel, PVH boot), vmlinuz, initrd.img,
# rootfs.img (sparse raw ext4), zfs-version.txt, build.log, stamp.
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
ZFS_SUITE=${ZFSYNC_VM_ZFS_SUITE:-bookworm-backports}
case "$ZFS_SUITE" in bookworm|bookworm-backports) ;;
  *) echo "build-image.sh: ZFSYNC_VM_ZFS_SUITE must be bookworm or bookworm-backports" >&2; exit 2;; esac
DIST=bookworm        # the guest's release (kernel 6.1 stays on it, see the apt pin below)

OUT=${1:-/var/cache/zfsync-vm/$ZFS_SUITE}
OUT=$(realpath -m "$OUT")
case "$OUT" in /|/tmp|/var|/var/cache|/root|/home) echo "build-image.sh: refusing OUTDIR '$OUT'" >&2; exit 2;; esac
PARENT=$(dirname "$OUT")
KEY=$( { cat "$SELF"; echo "suite=$ZFS_SUITE"; } | sha256sum | cut -d' ' -f1)
IMAGE_FILES="vmlinux initrd.img rootfs.img zfs-version.txt"

T0=$(date +%s.%N)
say() { printf '[build-image %6.1fs] %s\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*" >&2; }

image_ok() {   # $1 = dir: complete image made by this very script for this suite?
  local f
  [ "$(sed -n 's/^key=//p' "$1/stamp" 2>/dev/null)" = "$KEY" ] || return 1
  for f in $IMAGE_FILES; do [ -s "$1/$f" ] || return 1; done
}

# ------------------------------------------------------------------ host packages
# Apt source lines are copied from the host's own configuration (no host name in this file).
first_uri() {   # $1 = regex the URI must match, $2 = regex it must not match
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
  } | grep -E "$1" | grep -Ev "$2" | head -n1 || true
}
MIRROR=${ZFSYNC_VM_MIRROR:-$(first_uri '/debian/?$' 'security')}
SEC_MIRROR=${ZFSYNC_VM_SEC_MIRROR:-$(first_uri 'debian-security/?$' '^$')}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

need_root() { [ "$(id -u)" = 0 ] || { echo "build-image.sh: $1 needs root" >&2; exit 1; }; }

ensure_host_packages() {   # $1 = "run" (qemu only) or "build" (qemu + build tools)
  # nc: for ZFSYNC_VM_GUESTFWD rules of the form cmd:nc -N 127.0.0.1 PORT
  local want=(qemu-system-x86_64 nc) c missing=
  [ "$1" = build ] && want+=(mmdebstrap mkfs.ext4 xz)
  for c in "${want[@]}"; do command -v "$c" >/dev/null || missing=1; done
  [ -n "$missing" ] || return 0
  need_root "installing host packages"
  [ -n "$MIRROR" ] || { echo "build-image.sh: no Debian mirror in /etc/apt; set ZFSYNC_VM_MIRROR" >&2; exit 1; }
  # bookworm-backports: Debian 12 machine images may ship qemu-utils from backports; then
  # qemu-system-x86 from plain bookworm cannot be installed next to it ("held packages").
  # Backports keep apt's default priority 100, so nothing else on the host changes.
  cat > /etc/apt/sources.list.d/zfsync-vm-backports.sources <<SRC
Types: deb
URIs: $MIRROR
Suites: $DIST-backports
Components: main contrib
Signed-By: $KEYRING
SRC
  apt-get update -q >/dev/null
  local qsrc=()
  # (dpkg-query exits 1 for an unknown package: keep it out of a pipefail pipeline's status)
  if { dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true; } | grep -q bpo; then
    qsrc=(-t "$DIST-backports")
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${qsrc[@]}" \
    qemu-system-x86 qemu-utils >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends netcat-openbsd >/dev/null
  if [ "$1" = build ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      mmdebstrap e2fsprogs xz-utils >/dev/null
  fi
  say "host packages ready ($(qemu-system-x86_64 --version | head -n1))"
}

# ------------------------------------------------------------------ cache check + lock
if [ -z "${ZFSYNC_VM_REBUILD:-}" ] && image_ok "$OUT"; then
  ensure_host_packages run
  say "cached image is current: $OUT ($(sed -n 's/^zfs=//p' "$OUT/zfs-version.txt"))"
  exit 0
fi
need_root "building the image"
mkdir -p "$PARENT"
exec 9> "$OUT.lock"
if ! flock -n 9; then
  say "another build of $OUT is running; waiting for it"
  flock 9
fi
if [ -z "${ZFSYNC_VM_REBUILD:-}" ] && image_ok "$OUT"; then   # built while we waited
  ensure_host_packages run
  say "image built by the other caller: $OUT"
  exit 0
fi

# Never rm -rf a tree with something mounted inside it (a bind-mounted /dev would be wiped).
unmount_under() {   # unmount everything below $1, deepest first
  awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r \
    | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}
safe_rm() {
  local d=${1:?}
  [ -e "$d" ] || return 0
  unmount_under "$d"
  if awk -v d="$d/" 'index($5, d) == 1 {f = 1} END {exit !f}' /proc/self/mountinfo; then
    echo "build-image.sh: still mounted under $d, not removing it" >&2; return 1
  fi
  rm -rf --one-file-system "$d"
}

# Leftovers of builds that were killed (their lock is gone, we hold it now).
for d in "$PARENT/.build-$(basename "$OUT")".* "$OUT.old".*; do safe_rm "$d"; done

ensure_host_packages build
[ -n "$MIRROR" ] || { echo "build-image.sh: no Debian mirror in /etc/apt; set ZFSYNC_VM_MIRROR" >&2; exit 1; }
[ -n "$SEC_MIRROR" ] || SEC_MIRROR="${MIRROR%/debian}/debian-security"

TMP=$(mktemp -d "$PARENT/.build-$(basename "$OUT").XXXXXX")   # same file system: rename is atomic
ROOT="$TMP/rootfs"
exec 3>&2 2> >(tee -a "$TMP/build.log" >&3)   # stderr (say() lines): terminal + build.log
on_exit() {   # a failed build: keep its logs next to OUTDIR, drop the half-built tree
  cat "$TMP"/*.log > "$OUT.failed-build.log" 2>/dev/null || true
  echo "build-image.sh: build failed; logs in $OUT.failed-build.log" >&3
  safe_rm "$TMP" || true
}
trap on_exit EXIT
trap 'exit 130' INT TERM
say "building $OUT in $TMP: OpenZFS from $ZFS_SUITE, mirror $MIRROR"

# ------------------------------------------------------------------ guest files
# OpenZFS packages follow $ZFS_SUITE; everything else, the kernel above all, stays on bookworm
# (pinning with -t for the whole install would pull dkms etc. from backports too).
PIN="Package: zfs* libzfs* libzpool* libnvpair* libuutil* spl*
Pin: release n=$ZFS_SUITE
Pin-Priority: 990
"

# PID 1 of the guest. Protocol with vm/run.sh: the 9p share "ctl" holds cmd.sh; its output
# goes to ttyS1 (the host's stdout), its exit code to ctl/rc; then the VM powers off.
read -r -d '' GUEST_INIT <<'GUESTINIT' || true
#!/bin/bash
# /sbin/zfsync-vm-init: PID 1 of the zfsync test VM (kernel option init=/sbin/zfsync-vm-init).
# Mounts the basics, the 9p shares, a fresh /scratch, loads zfs, runs /mnt/ctl/cmd.sh with
# its output on /dev/ttyS1, writes the exit code to /mnt/ctl/rc and powers the VM off.
# Kernel option zfsync.udev=1 starts udevd (only needed for /dev/zvol/* and /dev/disk/* links).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8
t() { local u; read -r u _ < /proc/uptime; echo "zfsync-vm-init: ${u}s $*" > /dev/ttyS0; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null    # already moved here by the initrd
mkdir -p /dev/pts /dev/shm /run /tmp /mnt/ctl /mnt/work /scratch
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
ln -sf /proc/self/fd /dev/fd
hostname zfsync-vm
# After the sysrq power-off the disk is gone: wait with a bash builtin, never /usr/bin/sleep.
halt_vm() { sync; echo o > /proc/sysrq-trigger; mkfifo /run/halt 2>/dev/null; read -r -t 60 _ <> /run/halt; echo b > /proc/sysrq-trigger; }
finish() { echo "$1" > /mnt/ctl/rc; sync; umount /mnt/ctl; halt_vm; }
modprobe 9pnet_virtio; modprobe 9p
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none ctl /mnt/ctl || { t "cannot mount 9p share ctl"; halt_vm; }
if grep -qx work /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null; then
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 work /mnt/work
fi
stty -F /dev/ttyS1 raw -echo    # else every \n reaches the host as \r\n
[ -f /mnt/ctl/cmd.sh ] || { t "no /mnt/ctl/cmd.sh"; finish 254; }
if grep -qw 'zfsync.udev=1' /proc/cmdline; then
  /lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
  udevadm trigger --action=add >/dev/null 2>&1; udevadm settle -t 30 >/dev/null 2>&1
  t "udev settled"
fi
# qemu user-mode network, static address, deliberately no default route: the guest can reach
# only 10.0.2.x (the forwards vm/run.sh sets up), nothing beyond the host.
modprobe virtio_net
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; fi
if [ -b /dev/vdb ]; then   # scratch disk: fresh ext4 every boot, for file vdevs
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard /dev/vdb && mount -o noatime /dev/vdb /scratch
fi
t "network + scratch ready"
modprobe zfs || { echo "zfsync-vm-init: modprobe zfs failed" > /dev/ttyS1; finish 253; }
t "zfs ready: $(cat /sys/module/zfs/version)"
cd /root
bash /mnt/ctl/cmd.sh < /dev/null 2>&1 | tee /mnt/ctl/output > /dev/ttyS1
rc=${PIPESTATUS[0]}
t "cmd.sh exited $rc"
finish "$rc"
GUESTINIT

# The initrd's /init: Debian's initramfs-tools + udev cost ~3 s + 5-9 s per boot under TCG;
# this only loads virtio-blk + ext4 and switches to the root image.
read -r -d '' INITRD_INIT <<'INITRDINIT' || true
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
for m in $($B cat /modules.order); do $B insmod "$m" || echo "initrd: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 1000 ]; do $B usleep 10000; i=$((i + 1)); done
if ! $B mount -t ext4 -o rw /dev/vda /newroot; then
  echo "initrd: cannot mount /dev/vda"; echo o > /proc/sysrq-trigger; $B sleep 60
fi
$B umount /proc
$B mount --move /dev /newroot/dev
exec $B switch_root /newroot /sbin/zfsync-vm-init
INITRDINIT

# ------------------------------------------------------------------ guest root tree
mkdir -p "$TMP/hooks"
printf '%s' "$PIN" > "$TMP/hooks/pin"
# initramfs-tools runs when the kernel is installed; its initrd is unused, keep it cheap
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$TMP/hooks/initramfs"
say "mmdebstrap (download, install, DKMS build of zfs: the long part)"
# libc6 + libgcc-s1: what a Rust binary built on a Debian 12 host links against, so the
# host's target/release binaries run in the guest as they are.
mmdebstrap --mode=root --variant=minbase --components=main,contrib \
  --aptopt='Acquire::Retries "3"' \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --setup-hook='mkdir -p "$1/etc/apt/preferences.d" "$1/etc/initramfs-tools/conf.d"' \
  --setup-hook="cp '$TMP/hooks/pin' \"\$1/etc/apt/preferences.d/zfsync-vm-zfs\"" \
  --setup-hook="cp '$TMP/hooks/initramfs' \"\$1/etc/initramfs-tools/conf.d/zfsync-vm\"" \
  --include=linux-image-amd64,linux-headers-amd64,zfs-dkms,zfsutils-linux,libc6,libgcc-s1,kmod,udev,iproute2,netcat-openbsd,procps,e2fsprogs,pv,python3,busybox-static,cpio \
  "$DIST" "$ROOT" \
  "deb [signed-by=$KEYRING] $MIRROR $DIST main contrib" \
  "deb [signed-by=$KEYRING] $MIRROR $DIST-updates main contrib" \
  "deb [signed-by=$KEYRING] $SEC_MIRROR $DIST-security main contrib" \
  "deb [signed-by=$KEYRING] $MIRROR $DIST-backports main contrib" \
  > "$TMP/mmdebstrap.log" 2>&1 || { tail -n 50 "$TMP/mmdebstrap.log" >&2; exit 1; }

KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -n1)
ZVER=$(chroot "$ROOT" dpkg-query -W -f='${Version}' zfsutils-linux)
say "guest kernel $KVER, zfsutils-linux $ZVER"

chroot_mounts() {   # bind /proc and /dev into the tree for dkms / apt maintainer scripts
  mount --bind /proc "$ROOT/proc"; mount --bind /dev "$ROOT/dev"; mount --bind /dev/pts "$ROOT/dev/pts"
}
MODDIR="$ROOT/lib/modules/$KVER/updates/dkms"
# DKMS inside the chroot builds for the kernels in the chroot's /lib/modules (the host's own
# kernel is not there). Should it not have happened, build explicitly.
if ! ls "$MODDIR"/zfs.ko* >/dev/null 2>&1; then
  say "zfs.ko missing: dkms autoinstall -k $KVER"
  chroot_mounts
  chroot "$ROOT" dkms autoinstall -k "$KVER" > "$TMP/dkms.log" 2>&1 || { tail -n 50 "$TMP/dkms.log" >&2; exit 1; }
  unmount_under "$ROOT"
fi
ls "$MODDIR"/zfs.ko* >/dev/null

printf '%s\n' "$GUEST_INIT" > "$ROOT/sbin/zfsync-vm-init"; chmod 755 "$ROOT/sbin/zfsync-vm-init"
echo zfsync-vm > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 zfsync-vm\n' > "$ROOT/etc/hosts"
{ echo "zfs=$ZVER"; echo "zfs_suite=$ZFS_SUITE"; echo "kernel=$KVER"; } > "$TMP/zfs-version.txt"

# ------------------------------------------------------------------ kernel
# qemu boots an uncompressed ELF vmlinux through its PVH entry point: no real-mode setup and
# no in-guest decompression, ~3 s faster per boot under TCG. Cut the xz payload out of vmlinuz.
cp "$ROOT/boot/vmlinuz-$KVER" "$TMP/vmlinuz"
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$TMP/vmlinuz" | head -n1 | cut -d: -f1 || true)
[ -n "$off" ] || { echo "build-image.sh: no xz payload in vmlinuz" >&2; exit 1; }
tail -c +$((off + 1)) "$TMP/vmlinuz" | xz -dc > "$TMP/vmlinux" 2>/dev/null || true   # trailing data: rc 1
[ "$(head -c 4 "$TMP/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || { echo "build-image.sh: vmlinux extraction failed" >&2; exit 1; }

# ------------------------------------------------------------------ initrd
D="$ROOT/initrd-tree"; mkdir -p "$D/bin" "$D/dev" "$D/proc" "$D/newroot"
cp "$ROOT/bin/busybox" "$D/bin/busybox"
# "-a": without it modprobe takes the 2nd+ names as parameters of the first module
chroot "$ROOT" modprobe -a -S "$KVER" --show-depends virtio_pci virtio_blk crc32c_generic ext4 \
  | awk '$1 == "insmod" { if (!seen[$2]++) print $2 }' > "$D/modules.order"
while read -r m; do mkdir -p "$D$(dirname "$m")"; cp "$ROOT$m" "$D$m"; done < "$D/modules.order"
printf '%s\n' "$INITRD_INIT" > "$D/init"; chmod 755 "$D/init"
chroot "$ROOT" sh -c 'cd /initrd-tree && find . | cpio -o -H newc --quiet' > "$TMP/initrd.img"
rm -rf "$D"
say "kernel + initrd ready ($(du -h --apparent-size "$TMP/vmlinux" | cut -f1) vmlinux, $(du -h "$TMP/initrd.img" | cut -f1) initrd)"

# ------------------------------------------------------------------ drop the build tools
# Purging zfs-dkms runs "dkms remove", which deletes the built modules: keep a copy.
cp -a "$ROOT/lib/modules/$KVER/updates" "$TMP/zfs-modules"
chroot_mounts
BUILD_PKGS=$(chroot "$ROOT" dpkg-query -W -f='${db:Status-Status} ${Package}\n' \
               zfs-dkms dkms 'linux-headers-*' 'linux-kbuild-*' gcc-12 cpp-12 gcc cpp libc6-dev \
               linux-libc-dev libgcc-12-dev binutils make patch dpkg-dev 2>/dev/null \
             | awk '$1 == "installed" {print $2}' || true)
# Name gcc & co. explicitly and ignore Recommends for autoremove, or they stay behind.
# (perl stays: usrmerge depends on it.)
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --autoremove \
  -o APT::AutoRemove::RecommendsImportant=false -o APT::AutoRemove::SuggestsImportant=false $BUILD_PKGS \
  > "$TMP/purge.log" 2>&1 || { tail -n 30 "$TMP/purge.log" >&2; exit 1; }
chroot "$ROOT" apt-get clean
unmount_under "$ROOT"
rm -rf "$ROOT/lib/modules/$KVER/updates"
cp -a "$TMP/zfs-modules" "$ROOT/lib/modules/$KVER/updates"
rm -rf "$TMP/zfs-modules"
# what a Rust binary needs must have survived the purge
for lib in libc.so.6 libgcc_s.so.1 libm.so.6; do
  [ -e "$ROOT/lib/x86_64-linux-gnu/$lib" ] || [ -e "$ROOT/usr/lib/x86_64-linux-gnu/$lib" ] \
    || { echo "build-image.sh: $lib missing from the guest" >&2; exit 1; }
done
say "purged build-only packages: $(echo $BUILD_PKGS)"

# ------------------------------------------------------------------ prune + root image
# A headless throw-away VM needs no GPU/wifi/sound/usb/... modules, docs or apt caches.
M="${ROOT:?}/lib/modules/$KVER/kernel"
rm -rf "${ROOT:?}"/usr/src/* "${ROOT:?}"/var/lib/dkms "${ROOT:?}"/boot/* \
       "${ROOT:?}"/var/cache/apt/* "${ROOT:?}"/var/lib/apt/lists/* "${ROOT:?}"/var/log/* \
       "${ROOT:?}"/usr/share/doc "${ROOT:?}"/usr/share/man "${ROOT:?}"/usr/share/locale \
       "${M:?}"/drivers/{gpu,media,net/wireless,net/ethernet,infiniband,staging,usb,bluetooth,iio,hid} \
       "${M:?}"/drivers/{input,isdn,mtd,net/can,net/usb,net/wwan,thunderbolt,video,platform,hwmon,edac} \
       "${M:?}"/sound "${M:?}"/net/wireless "${M:?}"/net/mac80211 "${M:?}"/net/bluetooth
chroot "$ROOT" depmod -a "$KVER"
chroot "$ROOT" modinfo -k "$KVER" -F version zfs > /dev/null   # zfs must still resolve
SIZE_MB=$(( $(du -sm "$ROOT" | cut -f1) * 13 / 10 + 200 ))
# mkfs.ext4 -d fills the file system from the tree: no loop mount needed
mkfs.ext4 -q -F -L zfsync-vm -O ^has_journal -d "$ROOT" "$TMP/rootfs.img" "${SIZE_MB}M" >/dev/null
safe_rm "$ROOT"
rm -rf "$TMP/hooks"
say "rootfs.img: ${SIZE_MB} MiB apparent, $(du -h "$TMP/rootfs.img" | cut -f1) allocated"

# ------------------------------------------------------------------ publish
# The stamp goes in last; then the directory replaces OUTDIR by rename (same file system).
printf 'key=%s\nsuite=%s\nbuilt=%s\nscript=%s\n' "$KEY" "$ZFS_SUITE" "$(date -u +%FT%TZ)" "$SELF" > "$TMP/stamp"
sync -f "$TMP/rootfs.img"
chmod 755 "$TMP"
if [ -e "$OUT" ]; then
  OLD=$(mktemp -u "$OUT.old.XXXXXX"); mv -T "$OUT" "$OLD"
fi
mv -T "$TMP" "$OUT"
trap - EXIT
rm -f "$OUT.failed-build.log"
[ -z "${OLD:-}" ] || safe_rm "$OLD"   # a VM still running from it keeps its open files
say "done: $OUT ($(sed -n 's/^zfs=//p' "$OUT/zfs-version.txt"))"
