#!/bin/bash
# tests/vm/openzfs.sh: zfsync's OpenZFS suite. It runs INSIDE the test VM, with the
# host-built zfsync binaries shared at /mnt/work:
#
#   ZFSYNC_VM_SHARE=target/release vm/run.sh tests/vm/openzfs.sh
#
# The sender and the receiver both run in the guest, on loopback, against real OpenZFS
# 2.x pools on file vdevs. Each test checks what a user would check on the receiver:
# snapshot GUIDs, file contents, encryption, holds, mount state. The last line is
# "N passed, M failed"; the exit status is non-zero if any test failed.
set -uo pipefail

BIN=${ZFSYNC_BIN:-/mnt/work}
SEND="$BIN/zfsync-send"
RECV="$BIN/zfsync-recv"
ADMIN="$BIN/zfsync"
WORK=/scratch/zfsync-suite
PORT=7611
ADDR=127.0.0.1:$PORT
TARGET=dst/backup
passed=0
failed=0
failures=()

die() { echo "  assertion failed: $*" >&2; exit 1; }
note() { echo "  $*"; }

# -- helpers ---------------------------------------------------------------------------

# The snapshots of DS as "name guid" lines, oldest first.
snaps() { zfs list -Hp -t snapshot -o name,guid -s createtxg -d 1 "$1" | sed "s|^$1@||"; }

# Same snapshots (names and GUIDs) on both sides.
same_snaps() {
    local a b
    a=$(snaps "$1") || die "cannot list $1"
    b=$(snaps "$2") || die "cannot list $2"
    [[ -n $a ]] || die "$1 has no snapshots"
    [[ $a == "$b" ]] || die "snapshots differ: $1 vs $2"$'\n'"$a"$'\n---\n'"$b"
}

# Every snapshot of the source is on the destination with the same GUID (the destination
# may keep older ones the source has expired).
has_snaps() {
    local a b
    a=$(snaps "$1") || die "cannot list $1"
    b=$(snaps "$2") || die "cannot list $2"
    [[ -n $a ]] || die "$1 has no snapshots"
    [[ -z $(comm -23 <(sort <<<"$a") <(sort <<<"$b")) ]] || die "$2 lacks snapshots of $1"$'\n'"$a"$'\n---\n'"$b"
}

# Same file contents at snapshot SNAP: the source's .zfs/snapshot against a read-only
# clone of the destination's snapshot (the destination itself is never mounted).
same_files() {
    local src=$1 dst=$2 snap=$3 mp
    mp=$(zfs get -H -o value mountpoint "$src")
    zfs clone -o mountpoint=/verify -o readonly=on "$dst@$snap" dst/verify || die "clone $dst@$snap"
    diff -r "$mp/.zfs/snapshot/$snap" /verify >/dev/null
    local rc=$?
    zfs destroy dst/verify || true
    ((rc == 0)) || die "file contents differ at @$snap between $src and $dst"
}

# The properties the receiver keeps out of every stream (zfs recv -x) did not come from
# one on DS, a new filesystem received in place: it is unmounted, not mountable by itself,
# and read-only (the receiver's own readonly=on, set on TARGET, not the stream's).
receiver_owns_its_properties() {
    local ds=$1 p v
    for p in mountpoint canmount readonly sharenfs sharesmb; do
        v=$(zfs get -H -o value,source $p "$ds")
        [[ $v != *received* ]] || die "$p came from the stream: $v"
    done
    [[ $(zfs get -H -o value mountpoint "$ds") == none ]] || die "mountpoint is $(zfs get -H -o value mountpoint "$ds")"
    [[ $(zfs get -H -o value canmount "$ds") == noauto ]] || die "canmount is $(zfs get -H -o value canmount "$ds")"
    [[ $(zfs get -H -o value readonly "$ds") == on ]] || die "readonly is $(zfs get -H -o value readonly "$ds")"
    [[ $(zfs get -H -o value mounted "$ds") == no ]] || die "$ds is mounted"
}

start_recv() {
    "$RECV" -l "$ADDR" -v "$@" "$TARGET" >"$WORK/recv.out" 2>"$WORK/recv.log" &
    RECV_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$WORK/recv.out" 2>/dev/null && return 0
        kill -0 "$RECV_PID" 2>/dev/null || { cat "$WORK/recv.log" >&2; die "receiver died at start"; }
        sleep 0.1
    done
    die "receiver did not start"
}

stop_recv() {
    [[ -n ${RECV_PID:-} ]] || return 0
    kill -TERM "$RECV_PID" 2>/dev/null || true
    wait "$RECV_PID" 2>/dev/null || true
    RECV_PID=
}

# Fresh pools for each test: no test sees another's leftovers.
fresh_pools() {
    stop_recv
    zpool destroy -f src 2>/dev/null || true
    zpool destroy -f dst 2>/dev/null || true
    rm -f "$WORK"/*.img
    rm -rf "$WORK/rstate"
    truncate -s 2G "$WORK/src.img" "$WORK/dst.img"
    zpool create -f -O mountpoint=/src src "$WORK/src.img" || die "zpool create src"
    zpool create -f -O mountpoint=none dst "$WORK/dst.img" || die "zpool create dst"
}

run_test() {
    local name=$1
    echo "--- $name"
    (
        set -e
        fresh_pools
        "$name"
    )
    local rc=$?
    stop_recv
    # A test's receiver runs in its subshell; make sure none outlives it.
    pkill -x zfsync-recv 2>/dev/null
    if ((rc == 0)); then
        echo "ok $name"
        passed=$((passed + 1))
    else
        echo "FAILED $name"
        [[ -s $WORK/recv.log ]] && tail -n 20 "$WORK/recv.log" | sed 's/^/  recv: /'
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

# -- tests -----------------------------------------------------------------------------

# Capabilities detected; a tree of filesystems and a volume replicated full then
# incrementally; nothing mounted on the receiver; new filesystems canmount=noauto.
test_tree_and_zvol() {
    zfs create src/data
    zfs create src/data/home
    zfs create src/data/home/alice
    zfs create -V 32M src/data/vol
    dd if=/dev/urandom of=/src/data/home/alice/a bs=1M count=4 status=none
    echo hello >/src/data/home/b
    zfs snapshot -r src/data@s1
    start_recv
    "$SEND" -t 4 -vv src/data "$ADDR" >"$WORK/send.out" 2>"$WORK/send.log" || { cat "$WORK/send.out"; die "full send failed"; }
    grep -q 'flavor="OpenZFS 2\.' "$WORK/send.log" || die "capabilities not detected as OpenZFS 2.x"
    for ds in "" /home /home/alice /vol; do same_snaps "src/data$ds" "$TARGET$ds"; done
    [[ $(zfs get -H -o value type $TARGET/vol) == volume ]] || die "volume did not arrive as a volume"
    same_files src/data/home/alice $TARGET/home/alice s1
    echo changed >/src/data/home/b
    zfs snapshot -r src/data@s2
    zfs snapshot -r src/data@s3
    "$SEND" -t 4 src/data "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "incremental failed"; }
    grep -q 'incremental @s1..@s3 (2 snapshots)' "$WORK/send.out" || die "not an incremental with intermediates: $(cat "$WORK/send.out")"
    for ds in "" /home /home/alice /vol; do same_snaps "src/data$ds" "$TARGET$ds"; done
    same_files src/data/home $TARGET/home s3
    local mounted
    mounted=$(zfs get -H -r -t filesystem -o value mounted $TARGET | sort -u)
    [[ $mounted == no ]] || die "received filesystems are mounted: $mounted"
    [[ $(zfs get -H -o value canmount $TARGET/home) == noauto ]] || die "canmount is not noauto"
    note "$(zfs version | head -n1): tree of 4 datasets incl. a volume, full + incremental"
}

# -c keeps the on-disk compression: far fewer bytes for compressible data than --plain.
test_compressed_send() {
    zfs create -o compression=lz4 src/text
    head -c 24M < <(yes "zfsync compresses this line well") >/src/text/f
    zfs snapshot src/text@s1
    start_recv
    "$SEND" -vv src/text "$ADDR" >"$WORK/send.out" 2>"$WORK/send.log" || die "send failed"
    grep -q 'send -c -L -e' "$WORK/send.log" || die "-c -L -e not used: $(grep 'zfs start' "$WORK/send.log")"
    local fast plain
    fast=$(awk '$1 == "src/text" {print $3}' "$WORK/send.out")
    same_snaps src/text $TARGET
    # A second copy beside it (the receiver's hold keeps the first from being destroyed).
    "$SEND" --plain -d plain src/text "$ADDR" >"$WORK/send.out" || die "plain send failed"
    plain=$(awk '$1 == "src/text" {print $3}' "$WORK/send.out")
    same_snaps src/text $TARGET/plain
    ((fast * 4 < plain)) || die "compressed stream $fast bytes is not much smaller than plain $plain"
    note "24 MiB of text: $fast bytes with -c, $plain bytes plain"
}

# An encrypted dataset is sent raw and stays encrypted; with the key it reads the same.
test_raw_encrypted() {
    encrypted_dataset src/secret 2
    zfs snapshot src/secret@s1
    start_recv
    "$SEND" -vv src/secret "$ADDR" >"$WORK/send.out" 2>"$WORK/send.log" || { cat "$WORK/send.out"; die "send failed"; }
    grep -q 'send -c -L -e -w' "$WORK/send.log" || die "not sent raw"
    same_snaps src/secret $TARGET
    [[ $(zfs get -H -o value encryption $TARGET) != off ]] || die "arrived unencrypted"
    [[ $(zfs get -H -o value keystatus $TARGET) == unavailable ]] || die "key is loaded on the receiver"
    echo more >/src/secret/b
    zfs snapshot src/secret@s2
    "$SEND" src/secret "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "raw incremental failed"; }
    same_snaps src/secret $TARGET
    zfs load-key -L "file://$WORK/key" $TARGET || die "cannot load the key on the receiver"
    same_files src/secret $TARGET s2
    zfs unload-key $TARGET
    note "raw full + incremental of an encrypted dataset; contents equal with the key"
}

# A zfs for the sender whose `zfs send` adds -p: a stream that carries the source's
# properties, at $WORK/propzfs.
prop_zfs() {
    printf '%s\n' '#!/bin/bash' \
        'if [[ $1 == send ]]; then shift; exec zfs send -p "$@"; fi' \
        'exec zfs "$@"' >"$WORK/propzfs"
    chmod +x "$WORK/propzfs"
}

# A slow sender for interruption tests: real zfs, with `zfs send` throttled by pv so a
# kill lands mid-stream (fault injection a real pool cannot produce on demand).
slow_zfs() {
    cat >"$WORK/slowzfs" <<'EOF'
#!/bin/bash
set -o pipefail
if [[ $1 == send && " $* " != *" -n"* ]]; then
    zfs "$@" | pv -q -L 8m
else
    exec zfs "$@"
fi
EOF
    chmod +x "$WORK/slowzfs"
}

# A send of DS (with ARGS) through slow_zfs, killed after 3 s: the receiver keeps a resume
# token on TARGET, which this waits for.
cut_send() {
    local ds=$1 token=-
    shift
    slow_zfs
    local before
    before=$(grep -c 'zfs start cmd=.*recv ' "$WORK/recv.log" || true)
    "$SEND" "$@" --zfs "$WORK/slowzfs" "$ds" "$ADDR" >/dev/null 2>&1 &
    local pid=$!
    # Cut once the receive has begun and taken a few MB (8 MB/s), however long the
    # sender took to get there: under TCG on a busy host that varies by seconds.
    for _ in $(seq 150); do
        (($(grep -c 'zfs start cmd=.*recv ' "$WORK/recv.log" || true) > before)) && break
        sleep 0.2
    done
    sleep 1.5
    kill -KILL $pid
    wait $pid 2>/dev/null || true
    # The killed sender's `zfs send | pv` ends on its own once it finds the pipe gone; until
    # then its snapshot is busy, and a test that destroys it right away fails.
    for _ in $(seq 50); do
        pgrep -f "zfs send .*$ds" >/dev/null || break
        sleep 0.2
    done
    for _ in $(seq 50); do
        token=$(zfs get -H -o value receive_resume_token $TARGET 2>/dev/null || echo -)
        [[ $token != - ]] && return 0
        sleep 0.2
    done
    die "no resume token after the kill"
}

# An encrypted filesystem DS (passphrase in $WORK/key, loaded) with MIB MiB of random data.
encrypted_dataset() {
    echo "correct horse battery staple" >"$WORK/key"
    zfs create -o encryption=on -o keyformat=passphrase -o keylocation="file://$WORK/key" "$1"
    dd if=/dev/urandom of="/$1/a" bs=1M count="$2" status=none
}

# Kill the sender mid-stream: the receiver keeps a resume token; the next run resumes
# and reports the bytes it did not send again.
test_resume_after_kill() {
    zfs create src/big
    dd if=/dev/urandom of=/src/big/a bs=1M count=48 status=none
    zfs snapshot src/big@s1
    start_recv
    cut_send src/big
    "$SEND" src/big "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "resumed send failed"; }
    local saved
    saved=$(grep -o 'resumed ([0-9]* bytes saved)' "$WORK/send.out" | grep -o '[0-9]*' || true)
    [[ -n $saved ]] || die "not resumed: $(cat "$WORK/send.out")"
    ((saved > 1000000)) || die "only $saved bytes saved"
    same_snaps src/big $TARGET
    same_files src/big $TARGET s1
    [[ $(zfs get -H -o value receive_resume_token $TARGET) == - ]] || die "token left behind"
    note "killed mid-stream, resumed with $saved bytes saved"
}

# A token whose source snapshot is gone: the resume fails, the token is dropped, and a
# normal send follows; nothing else is lost.
test_stale_token() {
    zfs create src/big
    dd if=/dev/urandom of=/src/big/a bs=1M count=48 status=none
    zfs snapshot src/big@s1
    echo next >/src/big/b
    zfs snapshot src/big@s2
    start_recv
    cut_send src/big
    zfs destroy src/big@s1
    "$SEND" src/big "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send after a stale token failed"; }
    grep -q 'resume failed' "$WORK/send.out" || die "stale token not reported: $(cat "$WORK/send.out")"
    same_snaps src/big $TARGET
    same_files src/big $TARGET s2
    note "stale token discarded, full send of @s2 followed"
}

# --mark keeps a hold on each receiver's base on the source, the receiver holds its
# newest snapshot, expiry cannot remove them, and old holds are released as bases move.
test_base_protected() {
    zfs create src/p
    zfs create src/p/c
    echo 1 >/src/p/c/f
    zfs snapshot -r src/p@s1
    start_recv
    "$SEND" --mark bk src/p "$ADDR" >/dev/null || die "send failed"
    zfs holds -H src/p/c@s1 | grep -q zfsync-base-bk || die "no source hold"
    zfs holds -H $TARGET/c@s1 | grep -q zfsync-recv || die "no receiver hold"
    [[ $(zfs get -H -o value zfsync:base:bk src/p/c@s1) != - ]] || die "no mark"
    zfs snapshot -r src/p@s2
    zfs snapshot -r src/p@s3
    "$SEND" --mark bk src/p "$ADDR" >/dev/null || die "second send failed"
    # Aggressive expiry: everything but nothing protected may go.
    local s
    for s in s1 s2 s3; do zfs destroy src/p/c@$s 2>/dev/null || true; done
    zfs list -H -o name src/p/c@s3 >/dev/null || die "expiry destroyed the held base"
    for s in s1 s2; do zfs list -H -o name src/p/c@$s >/dev/null 2>&1 && die "@$s survived though unprotected"; done
    [[ -z $(zfs holds -H $TARGET/c@s1) ]] || die "old receiver hold not released"
    zfs holds -H $TARGET/c@s3 | grep -q zfsync-recv || die "receiver hold did not move"
    [[ $(zfs get -H -o value zfsync:base:bk src/p@s1) == - ]] || die "old mark left"
    zfs snapshot -r src/p@s4
    "$SEND" --mark bk src/p "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send after expiry failed"; }
    grep -q 'incremental @s3..@s4' "$WORK/send.out" || die "not incremental from the protected base"
    local held
    held=$(zfs list -H -o name -t snapshot -r src/p | xargs -n1 zfs holds -H | grep -c zfsync-base-bk)
    ((held == 2)) || die "holds pile up: $held for 2 datasets"
    has_snaps src/p/c $TARGET/c
    note "source and receiver holds follow the base; expiry could not remove it"
}

# The names of DS's bookmarks, sorted.
bookmarks() { zfs list -H -t bookmark -o name -d 1 "$1" | sed "s|^$1#||" | sort; }

# --mark on OpenZFS also keeps a bookmark of each receiver's base (zfsync-base-ID:SNAP),
# moved with the mark: the new one made, then the old one destroyed. When the base
# snapshot goes by other means (its hold released by hand, then destroyed), the next run
# is still incremental, from the bookmark (-i DS#BM to the next snapshot): the receiver
# found its base among the offered snapshots by the bookmark's GUID. A receiver that has
# the source's newest, gone but for its bookmark, is up to date. A new receiver is offered
# the bookmark too, and gets the oldest snapshot in full.
test_bookmark_base() {
    zfs create src/b
    zfs create src/b/c
    echo 1 >/src/b/c/f
    zfs snapshot -r src/b@s1
    start_recv
    "$SEND" --mark bk src/b "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "full send failed"; }
    local ds
    for ds in b b/c; do
        [[ $(bookmarks src/$ds) == zfsync-base-bk:s1 ]] || die "src/$ds bookmarks: $(bookmarks src/$ds)"
    done
    echo 2 >/src/b/c/f
    zfs snapshot -r src/b@s2
    "$SEND" --mark bk src/b "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "second send failed"; }
    for ds in b b/c; do
        [[ $(bookmarks src/$ds) == zfsync-base-bk:s2 ]] || die "the bookmark did not move on src/$ds: $(bookmarks src/$ds)"
        [[ $(zfs get -H -o value guid "src/$ds#zfsync-base-bk:s2") == $(zfs get -H -o value guid src/$ds@s2) ]] || die "the bookmark is not of @s2"
    done
    echo 3 >/src/b/c/f
    zfs snapshot -r src/b@s3
    # Someone else's expiry: the base's hold released by hand, the base and all older gone.
    for ds in b b/c; do
        zfs release zfsync-base-bk src/$ds@s2
        zfs destroy src/$ds@s2
        zfs destroy src/$ds@s1
    done
    "$SEND" --mark bk -vv src/b "$ADDR" >"$WORK/send.out" 2>"$WORK/send.log" || { cat "$WORK/send.out"; die "send from the bookmark failed"; }
    for ds in "" /c; do
        [[ $(awk -v d="src/b$ds" '$1 == d' "$WORK/send.out") == *"incremental #zfsync-base-bk:s2..@s3 (1 snapshot)"* ]] ||
            die "src/b$ds not sent from the bookmark: $(cat "$WORK/send.out")"
    done
    grep -q "send -c -L -e -i src/b/c#zfsync-base-bk:s2 src/b/c@s3" "$WORK/send.log" || die "not zfs send -i #bookmark: $(grep 'zfs start' "$WORK/send.log")"
    for ds in "" /c; do has_snaps "src/b$ds" "$TARGET$ds"; done
    same_files src/b/c $TARGET/c s3
    for ds in b b/c; do
        [[ $(bookmarks src/$ds) == zfsync-base-bk:s3 ]] || die "src/$ds bookmarks after the run: $(bookmarks src/$ds)"
        zfs holds -H src/$ds@s3 | grep -q zfsync-base-bk || die "no hold on the new base of src/$ds"
    done
    # One more snapshot: -I from the base snapshot as ever.
    zfs snapshot -r src/b@s4
    zfs snapshot -r src/b@s5
    "$SEND" --mark bk src/b "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send after the bookmark failed"; }
    grep -q 'incremental @s3..@s5 (2 snapshots)' "$WORK/send.out" || die "not -I from @s3: $(cat "$WORK/send.out")"
    # The newest snapshot gone on the source, its bookmark left: up to date, not diverged.
    zfs release zfsync-base-bk src/b/c@s5
    zfs destroy src/b/c@s5
    "$SEND" --mark bk src/b "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send with the newest only a bookmark failed"; }
    grep -Eq '^src/b/c +up-to-date .*#zfsync-base-bk:s5$' "$WORK/send.out" || die "src/b/c not up to date at the bookmark: $(cat "$WORK/send.out")"
    # A new receiver is offered the bookmark first: its full stream is of the oldest
    # snapshot, never of the bookmark. (One worker: the parent arrives first, so the
    # child is received in place, not into the buffer.)
    zfs snapshot -r src/b@s6
    zfs destroy src/b/c@s3
    zfs destroy src/b/c@s4
    "$SEND" -t 1 -d fresh src/b "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send to a new destination failed"; }
    grep -Eq '^src/b/c +sent .*full @s6$' "$WORK/send.out" || die "src/b/c not sent in full from @s6: $(cat "$WORK/send.out")"
    same_snaps src/b/c $TARGET/fresh/c
    note "base snapshots destroyed on the source: incremental from the bookmark, up to date at one; a new receiver got a snapshot in full"
}

# The receiver's --keep never destroys its held base: daily=1 would keep only the day's
# first snapshot, and after each receive the snapshot it received is held (zfsync-recv),
# kept, and the only one held, while the base before it, now released, is pruned.
test_receiver_prune_keeps_held_base() {
    zfs create src/k
    local day=zfsync_2025-01-01T h
    zfs snapshot src/k@${day}00:00:00Z
    zfs snapshot src/k@${day}06:00:00Z
    start_recv --keep daily=1
    "$SEND" src/k "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "first send failed"; }
    for h in 12 18 23; do
        echo $h >/src/k/f
        zfs snapshot src/k@${day}$h:00:00Z
        "$SEND" src/k "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send of $h failed"; }
        local names held
        names=$(snaps $TARGET | awk '{print $1}' | tr '\n' ' ')
        [[ $names == "${day}00:00:00Z ${day}$h:00:00Z " ]] || die "after @$h the receiver has: $names"
        held=$(zfs list -H -t snapshot -o name -d 1 $TARGET | xargs -n1 zfs holds -H | awk '{print $1, $2}')
        [[ $held == "$TARGET@${day}$h:00:00Z zfsync-recv" ]] || die "after @$h the holds are: $held"
    done
    same_files src/k $TARGET ${day}23:00:00Z
    note "--keep daily=1 pruned each released base; the held newest stayed every time"
}

# A snapshot of the receiver's own, made after the last one received and holding no
# changes, is divergence: refused, naming it, with nothing changed, also by a receiver
# just started. zfs recv itself would take an incremental on top of such a snapshot
# (and keep it), so the receiver must plan from the destination's snapshots, not from
# the offered names alone (docs/PERFORMANCE.md: the quick look that was taken out).
test_own_snapshot_after_restart() {
    zfs create src/q
    zfs create src/q/a
    zfs create src/q/b
    echo 1 >/src/q/a/f
    zfs snapshot -r src/q@s1
    start_recv
    "$SEND" src/q "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "full send failed"; }
    zfs snapshot $TARGET/b@local
    local before
    before=$(snaps $TARGET/b)
    echo 2 >/src/q/a/f
    zfs snapshot -r src/q@s2
    stop_recv
    start_recv -vv
    "$SEND" src/q "$ADDR" >"$WORK/send.out" && die "the diverged dataset was not reported"
    [[ $(awk '$1 == "src/q/b" {print $2, $3}' "$WORK/send.out") == "refused (diverged)" ]] ||
        die "src/q/b not refused as diverged: $(cat "$WORK/send.out")"
    grep -q 'common snapshot s1 that the source does not have: local' "$WORK/send.out" ||
        die "the refusal does not name the snapshot: $(cat "$WORK/send.out")"
    if grep -q "recv .*$TARGET/b\"" "$WORK/recv.log"; then
        die "a stream was received into $TARGET/b: $(grep 'zfs start' "$WORK/recv.log")"
    fi
    [[ $(snaps $TARGET/b) == "$before" ]] || die "$TARGET/b changed"
    local ds
    for ds in "" /a; do same_snaps "src/q$ds" "$TARGET$ds"; done
    same_files src/q/a $TARGET/a s2
    note "a receiver's own snapshot refused after a restart, nothing received into it"
}

# With --allow-rollback, the receiver's own hold (on the newest snapshot it received)
# does not stop the rollback the operator allowed, and the hold follows the base: after
# each receive exactly the newest snapshot is held, also when the destination's newest
# was a snapshot of its own that the rollback removed.
test_rollback_over_own_hold() {
    zfs create src/r
    echo 1 >/src/r/f
    zfs snapshot src/r@s1
    echo 2 >/src/r/f
    zfs snapshot src/r@s2
    start_recv --allow-rollback
    "$SEND" src/r "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "full send failed"; }
    zfs holds -H $TARGET@s2 | grep -q zfsync-recv || die "no receiver hold on @s2"
    # The source goes back to @s1 and on from there: @s2 must go on the receiver too.
    zfs rollback -r src/r@s1
    echo 3 >/src/r/f
    zfs snapshot src/r@s3
    "$SEND" src/r "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send after the source's rollback failed"; }
    grep -q 'incremental @s1..@s3' "$WORK/send.out" || die "not incremental from @s1: $(cat "$WORK/send.out")"
    same_snaps src/r $TARGET
    same_files src/r $TARGET s3
    # A snapshot of the receiver's own on top; the source moves on.
    zfs snapshot $TARGET@local
    echo 4 >/src/r/f
    zfs snapshot src/r@s4
    "$SEND" src/r "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send over the receiver's own snapshot failed"; }
    same_snaps src/r $TARGET
    same_files src/r $TARGET s4
    local s held
    for s in s1 s3; do
        [[ -z $(zfs holds -H $TARGET@$s) ]] || die "@$s still held: $(zfs holds -H $TARGET@$s)"
    done
    held=$(zfs holds -H $TARGET@s4 | awk '{print $2}')
    [[ $held == zfsync-recv ]] || die "@s4 holds: '$held'"
    note "rollbacks went through the receiver's hold, which stayed on the newest only"
}

# A resume token is the receiver's word for what to send, and `zfs send -t` sends what it
# names, as it names it. An encrypted dataset's first send, decrypted (--no-raw), is cut:
# the receiver keeps a token without rawok. The next run sends raw, as by default: it must
# not resume the decrypted stream (plaintext to the receiver), but have the partial state
# dropped and send raw from scratch.
test_resume_token_checked() {
    encrypted_dataset src/enc 48
    zfs snapshot src/enc@s1
    start_recv
    cut_send src/enc --no-raw
    zfs send -nvt "$(zfs get -H -o value receive_resume_token $TARGET)" >"$WORK/token.txt" 2>&1 || true
    grep -q 'toname = src/enc@s1' "$WORK/token.txt" || die "unexpected token: $(cat "$WORK/token.txt")"
    grep -q rawok "$WORK/token.txt" && die "the decrypted stream's token says rawok"
    "$SEND" -vv src/enc "$ADDR" >"$WORK/send.out" 2>"$WORK/send.log" || { cat "$WORK/send.out"; die "send after the refused token failed"; }
    grep -q 'resume refused (it would send @s1 decrypted' "$WORK/send.out" || die "token not refused: $(cat "$WORK/send.out")"
    grep -q 'zfs send -t' "$WORK/send.log" && die "the token was used"
    grep -q 'send -c -L -e -w' "$WORK/send.log" || die "not sent raw"
    same_snaps src/enc $TARGET
    [[ $(zfs get -H -o value encryption $TARGET) != off ]] || die "arrived unencrypted"
    [[ $(zfs get -H -o value keystatus $TARGET) == unavailable ]] || die "key is loaded on the receiver"
    [[ $(zfs get -H -o value receive_resume_token $TARGET) == - ]] || die "token left behind"
    note "a decrypted stream's token refused by a raw run; sent raw from scratch"
}

# A stream is the sender's word: one that carries properties (`zfs send -p`, here from a
# sender whose zfs adds it) must not decide where the backup host mounts the data or
# whom it shares it with. Received with -x, the replica keeps its inherited mountpoint,
# and no share or canmount from the source applies.
test_stream_properties_excluded() {
    prop_zfs
    zfs create -o mountpoint=/evil -o canmount=on src/p
    zfs set sharesmb=on src/p 2>/dev/null || true
    zfs set sharenfs=on src/p 2>/dev/null || true
    zfs set zfsync:probe=kept src/p
    echo 1 >/evil/f
    zfs snapshot src/p@s1
    start_recv
    "$SEND" --zfs "$WORK/propzfs" src/p "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send with properties failed"; }
    echo 2 >/evil/g
    zfs snapshot src/p@s2
    "$SEND" --zfs "$WORK/propzfs" src/p "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "incremental with properties failed"; }
    same_snaps src/p $TARGET
    # The stream did carry properties: a harmless one arrived.
    [[ $(zfs get -H -o value zfsync:probe $TARGET) == kept ]] || die "no properties in the stream: the test proves nothing"
    receiver_owns_its_properties $TARGET
    note "mountpoint, canmount, readonly and shares in the stream were not applied; a user property was"
}

# issue 14 item 9: --props sends the dataset's properties (zfs send -p). compression and
# a user property arrive on the replica, and their changes with the next incremental; the
# receiver keeps mountpoint, canmount, readonly and the shares out (zfs recv -x).
test_props_option() {
    zfs create -o compression=gzip-3 -o mountpoint=/evil2 -o canmount=on src/p
    zfs set sharenfs=on src/p 2>/dev/null || true
    zfs set zfsync:probe=kept src/p
    echo 1 >/evil2/f
    zfs set readonly=on src/p
    zfs snapshot src/p@s1
    start_recv
    "$SEND" -vv --props src/p "$ADDR" >"$WORK/send.out" 2>"$WORK/send.log" || { cat "$WORK/send.out"; die "send --props failed"; }
    grep -Eq 'zfs start cmd="[^"]* send [^"]*-p ' "$WORK/send.log" || die "-p not used: $(grep 'zfs start' "$WORK/send.log")"
    same_snaps src/p $TARGET
    [[ $(zfs get -H -o value,source compression $TARGET) == $'gzip-3\treceived' ]] || die "compression: $(zfs get -H -o value,source compression $TARGET)"
    [[ $(zfs get -H -o value,source zfsync:probe $TARGET) == $'kept\treceived' ]] || die "user property: $(zfs get -H -o value,source zfsync:probe $TARGET)"
    receiver_owns_its_properties $TARGET
    # Changed properties travel with the next incremental.
    zfs set compression=lz4 src/p
    zfs set zfsync:probe=changed src/p
    zfs snapshot src/p@s2
    "$SEND" --props src/p "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "incremental --props failed"; }
    grep -q 'incremental @s1..@s2' "$WORK/send.out" || die "not an incremental: $(cat "$WORK/send.out")"
    same_snaps src/p $TARGET
    [[ $(zfs get -H -o value compression $TARGET) == lz4 ]] || die "compression change did not arrive"
    [[ $(zfs get -H -o value zfsync:probe $TARGET) == changed ]] || die "user property change did not arrive"
    receiver_owns_its_properties $TARGET
    # Without --props no property travels: a copy beside it has none received.
    "$SEND" -d plain src/p "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send without --props failed"; }
    same_snaps src/p $TARGET/plain
    [[ -z $(zfs get -H -s received -o property all $TARGET/plain) ]] || die "properties arrived without --props: $(zfs get -H -s received -o property,value all $TARGET/plain)"
    note "--props: compression and a user property arrived (and their changes); mountpoint, canmount, readonly and shares did not"
}

# A root and a middle dataset without snapshots, a leaf with some: the receiver makes
# placeholders (marked, never mounted) and the leaf lands in place under them. Once the
# middle dataset has a snapshot, a full receive with -F (and -u -s -o canmount=noauto -x
# ...) replaces its placeholder, keeps the leaf, and the mark goes.
test_placeholder_parents() {
    zfs create -p src/ph/mid/leaf
    echo leaf >/src/ph/mid/leaf/f
    zfs snapshot src/ph/mid/leaf@s1
    start_recv
    "$SEND" src/ph "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send under parents without snapshots failed"; }
    grep -q 'placeholder made on the receiver' "$WORK/send.out" || die "no placeholder reported: $(cat "$WORK/send.out")"
    local ds
    for ds in $TARGET $TARGET/mid; do
        [[ $(zfs get -H -o value,source zfsync:placeholder $ds) == $'on\tlocal' ]] || die "$ds is not marked a placeholder"
        [[ $(zfs get -H -o value canmount $ds) == off ]] || die "$ds canmount is $(zfs get -H -o value canmount $ds)"
    done
    same_snaps src/ph/mid/leaf $TARGET/mid/leaf
    [[ -z $(zfs list -H -o name -r ${TARGET}_zfsync_buffer 2>/dev/null | tail -n +2) ]] || die "datasets left in the buffer"
    echo mid >/src/ph/mid/m
    zfs snapshot src/ph/mid@p1
    "$SEND" src/ph "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send replacing the placeholder failed"; }
    grep -q 'full @p1' "$WORK/send.out" || die "the placeholder was not replaced by a full stream: $(cat "$WORK/send.out")"
    same_snaps src/ph/mid $TARGET/mid
    same_files src/ph/mid $TARGET/mid p1
    same_snaps src/ph/mid/leaf $TARGET/mid/leaf
    [[ $(zfs get -H -o source zfsync:placeholder $TARGET/mid) != local ]] || die "the replica is still marked a placeholder"
    local mounted
    mounted=$(zfs get -H -r -t filesystem -o value mounted $TARGET | sort -u)
    [[ $mounted == no ]] || die "something below TARGET is mounted: $mounted"
    note "placeholders for parents without snapshots; one replaced by -F, its child kept"
}

# Replicas are read-only: TARGET is received with -o readonly=on, everything below
# inherits it, and a stream that carries readonly=off (`send -p` from a writable source)
# does not make a replica writable (-x readonly).
test_read_only_replicas() {
    prop_zfs
    zfs create -o readonly=off src/w
    zfs create -o readonly=off src/w/kid
    echo 1 >/src/w/kid/f
    zfs snapshot -r src/w@s1
    start_recv
    "$SEND" --zfs "$WORK/propzfs" src/w "$ADDR" >"$WORK/send.out" 2>"$WORK/send.log" || { cat "$WORK/send.out"; die "send failed"; }
    grep -q -- '-o readonly=on' "$WORK/recv.log" || die "TARGET not received with -o readonly=on: $(grep 'zfs start' "$WORK/recv.log")"
    [[ $(zfs get -H -o value,source readonly $TARGET) == $'on\tlocal' ]] || die "TARGET: $(zfs get -H -o value,source readonly $TARGET)"
    [[ $(zfs get -H -o value,source readonly $TARGET/kid) == $'on\tinherited from '$TARGET ]] || die "kid: $(zfs get -H -o value,source readonly $TARGET/kid)"
    echo 2 >/src/w/kid/g
    zfs snapshot -r src/w@s2
    "$SEND" --zfs "$WORK/propzfs" src/w "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "incremental failed"; }
    same_snaps src/w/kid $TARGET/kid
    [[ $(zfs get -H -o value readonly $TARGET/kid) == on ]] || die "the stream made the replica writable"
    note "TARGET received read-only; readonly=off in the stream not applied"
}

# A replica written to by hand (readonly turned off, mounted, a file written) is refused
# ("modified since most recent snapshot"); zfsync:rollback=once on that dataset lets the
# next run roll it back and receive, names the rollback in the summary, and is cleared;
# the next change by hand is refused again.
test_rollback_once() {
    zfs create src/o
    zfs create src/o/kid
    echo 1 >/src/o/kid/f
    zfs snapshot -r src/o@s1
    start_recv
    "$SEND" src/o "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "full send failed"; }
    touch_by_hand() {
        zfs set readonly=off $TARGET/kid
        zfs set mountpoint=/hand $TARGET/kid
        zfs mount $TARGET/kid 2>/dev/null || true
        echo "$1" >/hand/by-hand
        zfs unmount $TARGET/kid
        zfs set mountpoint=none $TARGET/kid
        zfs inherit readonly $TARGET/kid
    }
    touch_by_hand one
    echo 2 >/src/o/kid/f
    zfs snapshot -r src/o@s2
    "$SEND" src/o "$ADDR" >"$WORK/send.out" && die "the dataset changed by hand was not refused"
    [[ $(awk '$1 == "src/o/kid" {print $2, $3}' "$WORK/send.out") == "refused (diverged)" ]] || die "not refused as diverged: $(cat "$WORK/send.out")"
    grep -q "zfs set zfsync:rollback=once $TARGET/kid" "$WORK/send.out" || die "the refusal names no remedy: $(cat "$WORK/send.out")"
    zfs set zfsync:rollback=once $TARGET/kid
    "$SEND" src/o "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send with the permission failed"; }
    grep -q 'rolled back to @s1 (no snapshot destroyed; zfsync:rollback=once), incremental @s1..@s2' "$WORK/send.out" || die "the rollback is not in the summary: $(cat "$WORK/send.out")"
    [[ $(zfs get -H -o source zfsync:rollback $TARGET/kid) != local ]] || die "the permission was not cleared"
    same_snaps src/o/kid $TARGET/kid
    same_files src/o/kid $TARGET/kid s2
    zfs holds -H $TARGET/kid@s2 | grep -q zfsync-recv || die "no receiver hold on the new base"
    touch_by_hand two
    echo 3 >/src/o/kid/f
    zfs snapshot -r src/o@s3
    "$SEND" src/o "$ADDR" >"$WORK/send.out" && die "a second change by hand was not refused"
    [[ $(awk '$1 == "src/o/kid" {print $2, $3}' "$WORK/send.out") == "refused (diverged)" ]] || die "not refused again: $(cat "$WORK/send.out")"
    note "a change by hand refused, rolled back once by zfsync:rollback=once, refused again"
}

# A key for client alice on both sides (mode 600): the receiver's in $WORK/recv.keys,
# the sender's in $WORK/alice.key.
make_keys() {
    "$RECV" --gen-key alice | grep -v '^#' | head -n 1 >"$WORK/key.line" || die "gen-key failed"
    install -m 600 "$WORK/key.line" "$WORK/recv.keys"
    install -m 600 "$WORK/key.line" "$WORK/alice.key"
}

# One run of the orphans test: snapshot src/t as SNAP, start a receiver whose clock is
# NOW (ZFSYNC_NOW) with ARGS, send src/t as alice, stop the receiver; its log stays in
# $WORK/recv.log.
orphans_run() {
    local now=$1 snap=$2
    shift 2
    zfs snapshot -r "src/t@$snap"
    ZFSYNC_NOW=$now start_recv --key-file "$WORK/recv.keys" --state-dir "$WORK/rstate" "$@"
    "$SEND" --key-file "$WORK/alice.key" src/t "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "send @$snap failed"; }
    stop_recv
}

# The holds on DS's snapshots as "snap tag" lines, sorted.
holds_of() {
    zfs list -H -t snapshot -o name -d 1 "$1" | xargs -r -n1 zfs holds -H | awk -v p="$1@" '{sub(p, "", $1); print $1, $2}' | sort
}

# --orphans-after on OpenZFS, where the receiver holds each replica's newest snapshot:
# of three children destroyed on the source, b's replica goes once the sender's lists
# have lacked it for the duration; c's, with a user hold on an older snapshot, is kept
# (reason=held) with every snapshot and both holds; d's, whose destroy fails (a clone of
# its snapshot lives outside it), stays and gets the receiver's hold back. The dry run
# just before names the same plan and destroys nothing.
test_orphans_held_and_destroyed() {
    make_keys
    zfs create src/t
    local c
    for c in a b c d; do
        zfs create src/t/$c
        echo $c >/src/t/$c/f
    done
    zfs snapshot -r src/t@s1
    local t0 day=86400 after=(--orphans-after 2d)
    t0=$(date +%s)
    orphans_run "$t0" s2 "${after[@]}"
    for c in "" /a /b /c /d; do same_snaps "src/t$c" "$TARGET$c"; done
    local c_snaps d_snaps
    c_snaps=$(snaps $TARGET/c)
    d_snaps=$(snaps $TARGET/d)
    zfs hold mine $TARGET/c@s1
    zfs clone $TARGET/d@s2 dst/dclone
    [[ $(holds_of $TARGET/c) == $'s1 mine\ns2 zfsync-recv' ]] || die "c's holds before: $(holds_of $TARGET/c)"
    for c in b c d; do zfs destroy -r src/t/$c; done
    # The first list that lacks them (absence begins), then one a day and an hour later:
    # two lists, but not yet 2d.
    orphans_run $((t0 + day)) s3 "${after[@]}"
    orphans_run $((t0 + 2 * day + 3600)) s4 "${after[@]}"
    grep -q 'orphan destroyed' "$WORK/recv.log" && die "destroyed before 2d: $(grep orphan "$WORK/recv.log")"
    for c in b c d; do zfs list -H -o name $TARGET/$c >/dev/null || die "$TARGET/$c gone before 2d"; done
    # Two days after the first list that lacked them: the dry run says, and does nothing.
    orphans_run $((t0 + 3 * day)) s5 "${after[@]}" --dry-run-orphans
    cp "$WORK/recv.log" "$WORK/dry.log"
    local plan
    plan=$(grep -o 'orphan would be destroyed dataset=[^ ]*' "$WORK/dry.log" | sort | tr '\n' ' ')
    [[ $plan == "orphan would be destroyed dataset=$TARGET/b orphan would be destroyed dataset=$TARGET/d " ]] ||
        die "dry run plan: '$plan'"$'\n'"$(grep orphan "$WORK/dry.log")"
    grep -q "orphan kept dataset=$TARGET/c reason=held" "$WORK/dry.log" || die "the dry run does not keep c for its hold: $(grep orphan "$WORK/dry.log")"
    grep -q 'orphan destroyed' "$WORK/dry.log" && die "the dry run destroyed: $(grep orphan "$WORK/dry.log")"
    for c in b c d; do zfs list -H -o name $TARGET/$c >/dev/null || die "the dry run destroyed $TARGET/$c"; done
    # The real run at the same time does what the dry run said, as far as ZFS lets it.
    orphans_run $((t0 + 3 * day)) s6 "${after[@]}"
    grep -q "orphan destroyed dataset=$TARGET/b " "$WORK/recv.log" || die "b not destroyed: $(grep orphan "$WORK/recv.log")"
    (($(grep -c 'orphan destroyed' "$WORK/recv.log") == 1)) || die "more than b destroyed: $(grep orphan "$WORK/recv.log")"
    zfs list -H -o name $TARGET/b >/dev/null 2>&1 && die "$TARGET/b is still there"
    grep -q "orphan kept dataset=$TARGET/c reason=held" "$WORK/recv.log" || die "c not kept for its hold: $(grep orphan "$WORK/recv.log")"
    zfs list -H -o name $TARGET/c >/dev/null || die "$TARGET/c, held by a user, was destroyed"
    [[ $(snaps $TARGET/c) == "$c_snaps" ]] || die "c's snapshots changed: $(snaps $TARGET/c)"
    [[ $(holds_of $TARGET/c) == $'s1 mine\ns2 zfsync-recv' ]] || die "c's holds after: $(holds_of $TARGET/c)"
    grep -q "orphan not destroyed dataset=$TARGET/d " "$WORK/recv.log" || die "d's failed destroy not logged: $(grep orphan "$WORK/recv.log")"
    [[ $(snaps $TARGET/d) == "$d_snaps" ]] || die "d's snapshots changed: $(snaps $TARGET/d)"
    [[ $(holds_of $TARGET/d) == 's2 zfsync-recv' ]] || die "the receiver's hold on d is not back: $(holds_of $TARGET/d)"
    for c in "" /a; do same_snaps "src/t$c" "$TARGET$c"; done
    note "b destroyed after 2d; c kept for a user's hold, d for a failed destroy, both with the receiver's hold"
}

# The receiver's history rows of DS as "kind to raw compressed outcome" lines, oldest
# first (zfsync history --format csv, columns found by the header).
recv_history() {
    "$ADMIN" history --state-dir "$WORK/rstate" --role recv --dataset "$1" --format csv --limit 0 |
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            { print $col["kind"], $col["to"], $col["raw"], $col["compressed"], $col["outcome"] }' | tac
}

# The receiver records from each stream's DRR_BEGIN whether it was raw (zfs send -w) and
# compressed (-c): an encrypted dataset sent raw (the default) and decrypted (--no-raw),
# a plain one compressed (the default) and --plain, each full and then incremental with
# an intermediate snapshot (zfs send -I, a compound stream).
test_history_records_raw_and_compressed() {
    zfs create -o compression=lz4 src/text
    head -c 4M < <(yes "zfsync compresses this line well") >/src/text/f
    encrypted_dataset src/enc 2
    local ds
    for ds in text enc; do zfs snapshot src/$ds@s1; done
    start_recv --state-dir "$WORK/rstate"
    local -A how=([text]="" [plain]="--plain -d plain" [enc]="-d enc" [dec]="--no-raw -d dec")
    local dest src
    for dest in text plain enc dec; do
        src=src/text
        [[ $dest == enc || $dest == dec ]] && src=src/enc
        # shellcheck disable=SC2086 # the options are words
        "$SEND" -vv ${how[$dest]} $src "$ADDR" >"$WORK/send.out" 2>"$WORK/send.$dest.log" || { cat "$WORK/send.out"; die "send to $dest failed"; }
    done
    grep -q 'send -c -L -e -w' "$WORK/send.enc.log" || die "enc not sent raw: $(grep 'zfs start' "$WORK/send.enc.log")"
    grep -q 'send -c -L -e -w' "$WORK/send.dec.log" && die "dec sent raw: $(grep 'zfs start' "$WORK/send.dec.log")"
    grep -Eq 'zfs start cmd="[^"]* send -c ' "$WORK/send.text.log" || die "text not sent -c: $(grep 'zfs start' "$WORK/send.text.log")"
    grep -Eq 'zfs start cmd="[^"]* send [^"]*-c' "$WORK/send.plain.log" && die "plain sent -c: $(grep 'zfs start' "$WORK/send.plain.log")"
    for ds in text enc; do
        echo more >>/src/$ds/f
        zfs snapshot src/$ds@s2
        zfs snapshot src/$ds@s3
    done
    for dest in text plain enc dec; do
        src=src/text
        [[ $dest == enc || $dest == dec ]] && src=src/enc
        # shellcheck disable=SC2086
        "$SEND" ${how[$dest]} $src "$ADDR" >"$WORK/send.out" || { cat "$WORK/send.out"; die "incremental to $dest failed"; }
        grep -q 'incremental @s1..@s3 (2 snapshots)' "$WORK/send.out" || die "not -I to $dest: $(cat "$WORK/send.out")"
    done
    [[ $(zfs get -H -o value encryption $TARGET/enc) != off ]] || die "enc arrived unencrypted"
    [[ $(zfs get -H -o value encryption $TARGET/dec) == off ]] || die "dec arrived encrypted"
    local raw compressed got
    for dest in text plain enc dec; do
        case $dest in
        text) ds=$TARGET raw=false compressed=true ;;
        plain) ds=$TARGET/plain raw=false compressed=false ;;
        enc) ds=$TARGET/enc raw=true compressed=true ;;
        dec) ds=$TARGET/dec raw=false compressed=true ;;
        esac
        got=$(recv_history $ds)
        [[ $got == "full s1 $raw $compressed done"$'\n'"incremental s3 $raw $compressed done" ]] ||
            die "$ds: want raw=$raw compressed=$compressed, the history says:"$'\n'"$got"
    done
    note "raw and compressed recorded per stream: full and -I, raw/decrypted, -c/--plain"
}

# -- run -------------------------------------------------------------------------------

mkdir -p "$WORK"
echo "zfsync OpenZFS suite on $(zfs version | head -n1), kernel module $(cat /sys/module/zfs/version)"
[[ -x $SEND && -x $RECV ]] || { echo "zfsync binaries missing in $BIN" >&2; exit 2; }
tests=(test_tree_and_zvol test_compressed_send test_raw_encrypted test_resume_after_kill test_stale_token test_base_protected test_bookmark_base test_receiver_prune_keeps_held_base test_own_snapshot_after_restart test_rollback_over_own_hold test_resume_token_checked test_stream_properties_excluded test_props_option test_placeholder_parents test_read_only_replicas test_rollback_once test_orphans_held_and_destroyed test_history_records_raw_and_compressed)
if [[ $# -gt 0 ]]; then tests=("$@"); fi
for t in "${tests[@]}"; do run_test "$t"; done
zpool destroy -f src 2>/dev/null
zpool destroy -f dst 2>/dev/null
((failed == 0)) || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
((failed == 0))
