#!/bin/bash
# vm/run.sh SCRIPT [ARGS...] — boot the zfsync test VM (image from vm/build-image.sh), run
# SCRIPT with bash as root inside it, stream its stdout+stderr to our stdout, and exit with
# its exit code. 255 means the VM itself failed: no exit code came back (boot failure, panic,
# timeout). Callers may treat 255 as an infrastructure failure.
#
# In the guest, when SCRIPT starts: the zfs module is loaded; /scratch is a fresh empty ext4
# file system on a sparse disk (put file vdevs there); /mnt/work is $ZFSYNC_VM_SHARE;
# eth0 is 10.0.2.15/24 on qemu user-mode networking with restrict=on and no default route:
# the guest reaches nothing but the forwards below. The root image is opened with snapshot=on,
# so nothing the guest writes survives and several VMs can use one image at once.
#
# Env knobs:
#   ZFSYNC_VM_IMAGE      image dir (default /var/cache/zfsync-vm/${ZFSYNC_VM_ZFS_SUITE:-bookworm-backports})
#   ZFSYNC_VM_SHARE      host dir mounted (9p) at /mnt/work in the guest, read-only by default
#   ZFSYNC_VM_SHARE_RW=1 make that share writable (files the guest writes belong to root)
#   ZFSYNC_VM_TIMEOUT    seconds for the whole run before qemu is killed (default 900)
#   ZFSYNC_VM_BOOT_TIMEOUT  seconds for the guest to reach "zfs ready" (default 180); a boot that
#                        misses it is killed and retried once (rare TCG boot hangs under load)
#   ZFSYNC_VM_MEM        guest RAM, MiB (default 4096)
#   ZFSYNC_VM_CPUS       guest vCPUs (default 2)
#   ZFSYNC_VM_SCRATCH_GB size of the sparse /scratch disk, 0 = none (default 16)
#   ZFSYNC_VM_HOSTFWD    host -> guest TCP forwards, ';' or space separated, host side on
#                        loopback only: "tcp:127.0.0.1:19001-:9001" (host 127.0.0.1:19001 -> guest :9001)
#   ZFSYNC_VM_GUESTFWD   guest -> host forwards, ';' or newline separated:
#                        "tcp:10.0.2.100:9000-cmd:nc -N 127.0.0.1 19000" (each guest connection to
#                        10.0.2.100:9000 runs that command on the host, wired to the connection).
#                        No commas inside a rule (qemu option syntax); addresses must be loopback.
#   ZFSYNC_VM_ACCEL      kvm | tcg (default: kvm only with kvm_intel/kvm_amd, see below)
#   ZFSYNC_VM_UDEV=1     start udevd in the guest (+2-9 s; only for /dev/zvol/*, /dev/disk/* links)
#   ZFSYNC_VM_APPEND     extra kernel command line (default "quiet loglevel=4")
#   ZFSYNC_VM_KEEP_WORK=1 keep the per-run work dir (console.log, qemu.err, output, scratch.img)
#   ZFSYNC_VM_QUIET=1    no "[zfsync-vm ...]" progress lines on stderr
set -uo pipefail

die() { echo "vm/run.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] && [ -f "$1" ] || die "usage: vm/run.sh SCRIPT [ARGS...]"
SCRIPT=$1; shift
IMG=${ZFSYNC_VM_IMAGE:-/var/cache/zfsync-vm/${ZFSYNC_VM_ZFS_SUITE:-bookworm-backports}}
# build-image.sh writes the stamp last: without it the image is incomplete
for f in stamp vmlinux initrd.img rootfs.img; do
  [ -s "$IMG/$f" ] || die "no complete image in $IMG ($f missing): run vm/build-image.sh first"
done
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run vm/build-image.sh (installs it)"
# Same key as build-image.sh computes: warn (only) when the image predates the current script.
BUILDER="$(dirname "$(realpath "$0")")/build-image.sh"
suite=$(sed -n 's/^suite=//p' "$IMG/stamp")
if [ -f "$BUILDER" ] && [ "$(sed -n 's/^key=//p' "$IMG/stamp")" != \
     "$( { cat "$BUILDER"; echo "suite=$suite"; } | sha256sum | cut -d' ' -f1)" ]; then
  echo "vm/run.sh: warning: $IMG was built by another version of vm/build-image.sh; rerun it to refresh" >&2
fi
TIMEOUT=${ZFSYNC_VM_TIMEOUT:-900}
BOOT_TIMEOUT=${ZFSYNC_VM_BOOT_TIMEOUT:-180}
MEM=${ZFSYNC_VM_MEM:-4096}
CPUS=${ZFSYNC_VM_CPUS:-2}
SCRATCH_GB=${ZFSYNC_VM_SCRATCH_GB:-16}

T0=$(date +%s.%N)
log() { [ -n "${ZFSYNC_VM_QUIET:-}" ] || printf '[zfsync-vm %6.2fs] %s\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*" >&2; }

# ------------------------------------------------------------------ accelerator
# Only hardware KVM (kvm_intel / kvm_amd) runs a stock Debian kernel. Some hosts (e.g.
# Firecracker-based ones) have a /dev/kvm backed by kvm_pvm, which only runs PVM-enlightened
# guest kernels: a stock kernel hangs there silently at 100% CPU. So: TCG unless real KVM.
ACCEL=${ZFSYNC_VM_ACCEL:-}
if [ -z "$ACCEL" ]; then
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
    ACCEL=kvm
  else
    ACCEL=tcg
  fi
fi
# shellcheck disable=SC2054  # the commas belong to qemu's option syntax
case "$ACCEL" in
  kvm) CPU=(-accel kvm -cpu host);;
  tcg) CPU=(-accel tcg,thread=multi -cpu max);;
  *) die "ZFSYNC_VM_ACCEL must be kvm or tcg";;
esac

# ------------------------------------------------------------------ network (loopback only)
# restrict=on: the guest cannot open connections through qemu's NAT at all, only the
# guestfwd rules below; hostfwd rules must bind the host side to a 127.x address.
IPV4='[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}'
NET="user,model=virtio-net-pci,restrict=on"
hf=${ZFSYNC_VM_HOSTFWD:-}; read -ra hostfwd <<< "${hf//;/ }"
for r in "${hostfwd[@]}"; do
  [[ $r =~ ^tcp:127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:[0-9]+-(10\.0\.2\.15)?:[0-9]+$ ]] \
    || die "ZFSYNC_VM_HOSTFWD rule '$r': want tcp:127.0.0.1:HOSTPORT-:GUESTPORT"
  NET+=",hostfwd=$r"
done
if [ -n "${ZFSYNC_VM_GUESTFWD:-}" ]; then
  mapfile -t rules < <(printf '%s\n' "$ZFSYNC_VM_GUESTFWD" | tr ';' '\n')
  for r in "${rules[@]}"; do
    [ -n "$r" ] || continue
    [[ $r != *,* ]] || die "ZFSYNC_VM_GUESTFWD rule '$r': no commas allowed"
    [[ $r =~ ^tcp:10\.0\.2\.[0-9]{1,3}:[0-9]+-(cmd:.+|tcp:127\.[0-9.]+:[0-9]+)$ ]] \
      || die "ZFSYNC_VM_GUESTFWD rule '$r': want tcp:10.0.2.X:PORT-cmd:COMMAND"
    # every IPv4 address the host-side command names must be loopback
    for a in $(grep -oE "$IPV4" <<< "${r#*-}"); do
      [[ $a == 127.* ]] || die "ZFSYNC_VM_GUESTFWD rule '$r': host side must use 127.x only, not $a"
    done
    NET+=",guestfwd=$r"
  done
fi

# ------------------------------------------------------------------ per-run work dir
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zfsync-vm.XXXXXX")
QPID=
cleanup() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill "$QPID" 2>/dev/null; sleep 0.5; kill -9 "$QPID" 2>/dev/null
  fi
  if [ -n "${ZFSYNC_VM_KEEP_WORK:-}" ]; then echo "vm/run.sh: work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 255' INT TERM HUP

FS=()
if [ -n "${ZFSYNC_VM_SHARE:-}" ]; then
  [ -d "$ZFSYNC_VM_SHARE" ] || die "ZFSYNC_VM_SHARE '$ZFSYNC_VM_SHARE' is not a directory"
  ro=",readonly=on"; [ -z "${ZFSYNC_VM_SHARE_RW:-}" ] || ro=
  FS+=(-virtfs "local,path=$(realpath "$ZFSYNC_VM_SHARE"),mount_tag=work,security_model=none,id=work$ro")
fi

# One boot attempt. Returns 0 when the guest handed back an exit code (in $WORK/ctl/rc),
# 1 when the VM failed, 3 when it never reached "zfs ready" in time (worth a retry).
boot() {
  rm -rf "$WORK/ctl" "$WORK/scratch.img"; mkdir -p "$WORK/ctl"
  cp "$SCRIPT" "$WORK/ctl/script.sh"
  { printf 'exec bash /mnt/ctl/script.sh'; for a in "$@"; do printf ' %q' "$a"; done; echo; } > "$WORK/ctl/cmd.sh"
  local drives=(-drive "file=$IMG/rootfs.img,format=raw,if=virtio,snapshot=on,cache=unsafe")
  if [ "$SCRATCH_GB" != 0 ]; then
    truncate -s "${SCRATCH_GB}G" "$WORK/scratch.img"
    drives+=(-drive "file=$WORK/scratch.img,format=raw,if=virtio,cache=unsafe,discard=unmap")
  fi
  : > "$WORK/console.log"
  log "starting qemu ($ACCEL, $CPUS vCPU, $MEM MiB, image $IMG)"
  # ttyS0 = kernel console -> console.log; ttyS1 = the script's output -> our stdout.
  # -nodefaults: no default serial/parallel/vga; stdin is /dev/null so no terminal is touched.
  # snapshot=on puts the root image's overlay in $TMPDIR: keep it in the work dir.
  TMPDIR="$WORK" qemu-system-x86_64 \
    "${CPU[@]}" -smp "$CPUS" -m "$MEM" \
    -nodefaults -no-user-config -display none -monitor none -no-reboot \
    -kernel "$IMG/vmlinux" -initrd "$IMG/initrd.img" \
    -append "console=ttyS0 root=/dev/vda rw rootfstype=ext4 init=/sbin/zfsync-vm-init panic=-1 net.ifnames=0 ${ZFSYNC_VM_UDEV:+zfsync.udev=1} ${ZFSYNC_VM_APPEND:-quiet loglevel=4}" \
    "${drives[@]}" \
    -virtfs "local,path=$WORK/ctl,mount_tag=ctl,security_model=none,id=ctl" "${FS[@]}" \
    -nic "$NET" \
    -serial "file:$WORK/console.log" \
    -chardev stdio,id=out,signal=off -serial chardev:out \
    < /dev/null 2> "$WORK/qemu.err" &
  QPID=$!
  local now start booted='' verdict=
  start=$(date +%s)
  while kill -0 "$QPID" 2>/dev/null; do
    now=$(date +%s)
    if [ -z "$booted" ]; then
      if grep -q 'zfsync-vm-init: .* zfs ready' "$WORK/console.log" 2>/dev/null; then
        booted=1; log "guest ready after $((now - start)) s"
      elif [ $((now - start)) -ge "$BOOT_TIMEOUT" ]; then
        echo "vm/run.sh: guest not ready after ${BOOT_TIMEOUT}s, killing qemu" >&2; verdict=3; kill "$QPID"; break
      fi
    fi
    if [ $((now - START_ALL)) -ge "$TIMEOUT" ]; then
      echo "vm/run.sh: timeout after ${TIMEOUT}s, killing qemu" >&2; verdict=1; kill "$QPID"; break
    fi
    sleep 0.2
  done
  wait "$QPID" 2>/dev/null; QRC=$?; QPID=
  log "qemu exited ($QRC)"
  [ -n "$verdict" ] && return "$verdict"
  [ -s "$WORK/ctl/rc" ] && return 0
  return 1
}

START_ALL=$(date +%s)
boot "$@"; st=$?
if [ "$st" = 3 ]; then
  log "retrying the boot once"
  boot "$@"; st=$?
fi
if [ "$st" = 0 ]; then
  [ -n "${ZFSYNC_VM_QUIET:-}" ] || grep -h 'zfsync-vm-init:' "$WORK/console.log" | sed 's/^/[zfsync-vm guest] /' >&2
  exit "$(cat "$WORK/ctl/rc")"
fi
echo "vm/run.sh: the VM gave no exit code (qemu rc=$QRC). qemu stderr:" >&2
cat "$WORK/qemu.err" >&2
echo "--- last 40 lines of the guest console:" >&2
tail -n 40 "$WORK/console.log" >&2
exit 255
