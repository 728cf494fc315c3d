#!/usr/bin/env bash
# Boots a small qemu guest on a pure cgroup v2 kernel (Debian's stock kernel, software
# emulation) and checks the resource kernel there: `rk exec` probes for CPU bandwidth,
# SCHED_DEADLINE, memory (OOM), pids, io.max and the deadline ledger, plus the rk
# lifecycle tests (create/update/freeze/adopt/teardown). The guest prints one
# `RKCHECK <name> ok|FAIL ...` line per check; this script fails on any FAIL or on a
# missing marker.
#
# Usage: scripts/rk-v2-guest.sh
#   RK_BIN       rk binary to test (default: built with cargo)
#   RK_TEST_BIN  rk integration-test binary holding the lifecycle tests (default: built)
#   RK_GUEST_TIMEOUT  seconds before the guest is given up on (default 600)
# Installs qemu-system-x86, busybox-static and cpio with apt-get when missing, and
# downloads the kernel package; everything is cached under scripts/.cache/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache="$here/.cache/rk-v2-guest"
mkdir -p "$cache"
log() { echo "rk-v2-guest: $*" >&2; }

# --- tools -----------------------------------------------------------------------
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
command -v cpio >/dev/null || need_pkgs+=(cpio)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null >&2
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" </dev/null >&2
fi
busybox_bin=/bin/busybox
file -L "$busybox_bin" 2>/dev/null | grep -q 'statically linked' ||
    ldd "$busybox_bin" 2>&1 | grep -q 'not a dynamic' || {
    log "$busybox_bin is not statically linked (install busybox-static)"
    exit 1
}

# --- kernel ----------------------------------------------------------------------
# The modules egress shaping needs (veth, HTB, nf_tables with `socket cgroupv2`).
# loop: the discovery test attaches a loop device.
net_modules=(veth sch_htb nfnetlink crc32c_generic libcrc32c nf_tables nf_socket_ipv4
    nf_socket_ipv6 nft_socket loop)
modules_missing() {
    local m
    for m in "${net_modules[@]}"; do
        [ -n "$(find "$cache/kernel" -name "$m.ko*" 2>/dev/null)" ] || return 0
    done
    return 1
}
if ! ls "$cache"/kernel/boot/vmlinuz-* >/dev/null 2>&1 || modules_missing; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [ -z "$pkg" ]; then
        apt-get update -qq </dev/null >&2
        pkg=$(apt-cache depends linux-image-amd64 |
            awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    [ -n "$pkg" ] || { log "cannot find the kernel package linux-image-amd64 depends on"; exit 1; }
    log "downloading $pkg"
    rm -rf "$cache/dl" "$cache/kernel"
    mkdir -p "$cache/dl" "$cache/kernel"
    (cd "$cache/dl" && apt-get download "$pkg" </dev/null >&2)
    # Only the kernel image, the two modules io.max needs (a null block device) and
    # those of egress shaping.
    dpkg-deb --fsys-tarfile "$cache"/dl/*.deb |
        tar -x -C "$cache/kernel" --wildcards './boot/vmlinuz-*' \
            '*/kernel/fs/configfs/configfs.ko*' '*/drivers/block/null_blk/null_blk.ko*' \
            $(printf "*/%s.ko* " "${net_modules[@]}")
    rm -rf "$cache/dl"
fi
vmlinuz=$(ls "$cache"/kernel/boot/vmlinuz-* | head -n1)
log "kernel $(basename "$vmlinuz")"

# --- binaries --------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
if [ -z "${RK_BIN:-}" ]; then
    (cd "$repo" && cargo build -q -p rk --bin rk >&2)
    RK_BIN="$CARGO_TARGET_DIR/debug/rk"
fi
if [ -z "${RK_TEST_BIN:-}" ]; then
    RK_TEST_BIN=$(cd "$repo" && cargo test -q -p rk --test reservation --no-run \
        --message-format=json 2>/dev/null | grep '"kind":\["test"\]' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
fi
if [ -z "${RK_NET_TEST_BIN:-}" ]; then
    RK_NET_TEST_BIN=$(cd "$repo" && cargo test -q -p rk --test net_io --no-run \
        --message-format=json 2>/dev/null | grep '"kind":\["test"\]' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
fi
if [ -z "${LRMD_TEST_BIN:-}" ]; then
    LRMD_TEST_BIN=$(cd "$repo" && cargo test -q -p lrmd --bin lrmd --no-run \
        --message-format=json 2>/dev/null | grep '"profile":{[^}]*"test":true' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
fi
[ -x "$LRMD_TEST_BIN" ] || { log "test binary $LRMD_TEST_BIN missing"; exit 1; }
[ -x "$RK_BIN" ] || { log "rk binary $RK_BIN missing"; exit 1; }
[ -x "$RK_NET_TEST_BIN" ] || { log "test binary $RK_NET_TEST_BIN missing"; exit 1; }
[ -x "$RK_TEST_BIN" ] || { log "test binary $RK_TEST_BIN missing"; exit 1; }

# --- initramfs -------------------------------------------------------------------
root="$cache/root"
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/modules,usr/bin}
cp "$busybox_bin" "$root/bin/busybox"
for applet in $("$busybox_bin" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
# Binaries at the same absolute paths as on the host (the test binary finds rk by
# the path it was built with), stripped to keep the image small.
copy_bin() {
    local src=$1 dst="$root$1"
    mkdir -p "$(dirname "$dst")"
    objcopy --strip-debug "$src" "$dst" 2>/dev/null || cp "$src" "$dst"
    ldd "$src" | awk '/=>/ {print $3} /^\s*\/lib/ {print $1}' | while read -r lib; do
        [ -n "$lib" ] && [ -e "$lib" ] || continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
copy_bin "$(readlink -f "$RK_BIN")"
copy_bin "$(readlink -f "$RK_TEST_BIN")"
copy_bin "$(readlink -f "$RK_NET_TEST_BIN")"
# iproute2 and nftables for egress shaping, in /usr/sbin ahead of busybox's applets.
copy_bin "$(readlink -f "$LRMD_TEST_BIN")"
for tool in ip tc nft losetup; do
    src=$(readlink -f "$(command -v "$tool")")
    copy_bin "$src"
    [ "$src" = "/usr/sbin/$tool" ] || { mkdir -p "$root/usr/sbin"; cp "$root$src" "$root/usr/sbin/$tool"; }
done
printf '%s\n' "${net_modules[@]}" >"$root/lib/modules/net-modules"
# Dynamic loader at its canonical path.
for ld in /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2; do
    [ -e "$ld" ] && { mkdir -p "$root$(dirname "$ld")"; cp -L "$ld" "$root$ld"; }
done
find "$cache/kernel" -name '*.ko*' -exec cp {} "$root/lib/modules/" \;
sed -e "s|@RK_BIN@|$(readlink -f "$RK_BIN")|g" \
    -e "s|@RK_TEST_BIN@|$(readlink -f "$RK_TEST_BIN")|g" \
    -e "s|@RK_NET_TEST_BIN@|$(readlink -f "$RK_NET_TEST_BIN")|g" \
    -e "s|@LRMD_TEST_BIN@|$(readlink -f "$LRMD_TEST_BIN")|g" \
    "$here/guest/init.sh" >"$root/init"
chmod +x "$root/init"
# /dev/console must be in the archive: the kernel opens it before /init runs.
mknod -m 600 "$root/dev/console" c 5 1
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$cache/initramfs.gz")

# --- boot ------------------------------------------------------------------------
guest_log="$cache/guest.log"
timeout_s=${RK_GUEST_TIMEOUT:-600}
log "booting (log: $guest_log)"
start=$(date +%s)
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 \
    -kernel "$vmlinuz" -initrd "$cache/initramfs.gz" \
    -append 'console=ttyS0 panic=-1 quiet' \
    -nographic -no-reboot -nic none </dev/null >"$guest_log" 2>&1
qemu_rc=$?
set -e
elapsed=$(($(date +%s) - start))
log "guest ran ${elapsed}s (qemu exit $qemu_rc)"

# --- verdict ---------------------------------------------------------------------
expected=(host bandwidth deadline oom pids io ledger lifecycle net discovery teardown done)
fail=0
grep -a '^RKCHECK ' "$guest_log" | tr -d '\r' >&2 || true
for check in "${expected[@]}"; do
    line=$(grep -a "^RKCHECK $check " "$guest_log" | tr -d '\r' | tail -n1)
    if [ -z "$line" ]; then
        log "MISSING marker for check '$check'"
        fail=1
    elif ! grep -q "^RKCHECK $check ok" <<<"$line"; then
        log "FAILED check '$check'"
        fail=1
    fi
done
if [ $fail -ne 0 ]; then
    log "last lines of the guest log:"
    tail -n 60 "$guest_log" | tr -d '\r' >&2
    exit 1
fi
log "all checks passed on $(basename "$vmlinuz") in ${elapsed}s"
