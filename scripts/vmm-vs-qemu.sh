#!/usr/bin/env bash
# Side-by-side of `vmm` and QEMU microvm booting the same PVH ELF guests
# (hello and exits): whole-process wall time (hyperfine) and peak RSS
# (/usr/bin/time -v). Needs: hyperfine, qemu-system-x86, time (apt-get install).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p vmm
out=$(ls -td target/release/build/guests-*/out | head -1)
vmm=target/release/vmm
qemu="qemu-system-x86_64 -M microvm -accel kvm -nodefaults -nographic -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel"
RUNS=${RUNS:-30}

echo "## whole process, hello (PVH ELF)"
hyperfine -N -i --warmup 3 --runs "$RUNS" -n "vmm run hello" "$vmm run $out/hello.elf" \
    -n "qemu microvm hello" "$qemu $out/hello.elf"
echo "## whole process, exits (100000 port-I/O exits)"
hyperfine -N -i --warmup 1 --runs "$((RUNS / 3 + 1))" -n "vmm run exits" "$vmm run $out/exits.elf" \
    -n "qemu microvm exits" "$qemu $out/exits.elf"
echo "## peak RSS (KiB)"
for cmd in "$vmm run $out/hello.elf" "$qemu $out/hello.elf"; do
    rss=$( { /usr/bin/time -v $cmd >/dev/null || true; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
    echo "$rss  $cmd"
done
