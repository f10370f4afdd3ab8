#!/usr/bin/env bash
# Runs the x86 tests of kvm-unit-tests (built elsewhere: it is GPL code, so
# it is fetched and built, never committed) under `vmm run` and under QEMU,
# and prints each test's SUMMARY line under both, side by side.
#
#   git clone https://gitlab.com/kvm-unit-tests/kvm-unit-tests DIR
#   (cd DIR && ./configure --arch=x86_64 && make)
#   scripts/kvm-unit-tests.sh DIR [TEST...]     # default: every DIR/x86/*.flat
#
# Each test is a Multiboot kernel. Its settings come as environment
# variables in the first Multiboot module (NR_CPUS=1, MEMSIZE=256,
# TEST_DEVICE=0); both runs get the same file and 256 MiB. QEMU runs it as
# kvm-unit-tests' own runner does, with KVM, its default CPU model (-cpu
# host fails on a nested KVM) and pc-testdev. Every run is bounded by
# TIMEOUT seconds (default 60). Needs: qemu-system-x86 (apt-get install).
# Status: the guest's exit code (QEMU's isa-debug-exit doubles it and adds
# one: we undo that), "timeout", or the VMM's own status (vmm NN).
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: scripts/kvm-unit-tests.sh KVM_UNIT_TESTS_DIR [TEST...]}
shift
TIMEOUT=${TIMEOUT:-60}
cargo build --release -q -p vmm
vmm=$PWD/target/release/vmm
env_file=$(mktemp)
trap 'rm -f "$env_file"' EXIT
printf 'NR_CPUS=1\nMEMSIZE=256\nTEST_DEVICE=0\n' > "$env_file"
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    for f in "$dir"/x86/*.flat; do tests+=("$(basename "$f" .flat)"); done
fi

# summary OUTPUT: the SUMMARY line, else the last FAIL/PASS line, else the last line.
summary() {
    local s
    s=$(grep -a '^SUMMARY' <<<"$1" | tail -1)
    [ -n "$s" ] || s=$(grep -aE '^(FAIL|PASS|SKIP)' <<<"$1" | tail -1)
    [ -n "$s" ] || s=$(grep -av '^\s*$' <<<"$1" | tail -1)
    echo "${s:0:60}"
}

printf '%-22s | %-8s | %-44s | %-8s | %s\n' test vmm "vmm summary" qemu "qemu summary"
for t in "${tests[@]}"; do
    kernel="$dir/x86/$t.flat"
    [ -f "$kernel" ] || { echo "$t: no $kernel" >&2; continue; }
    out=$(timeout $((TIMEOUT + 10)) "$vmm" run "$kernel" --initrd "$env_file" --mem 256 --timeout "$TIMEOUT" 2>&1)
    rc=$?
    case $rc in
        76 | 124) vs=timeout ;;
        7[0-9] | 8[0-9] | 9[0-9]) vs="vmm $rc" ;;
        *) vs=$rc ;;
    esac
    qout=$(timeout "$TIMEOUT" qemu-system-x86_64 -machine accel=kvm -nodefaults -nographic -vnc none -serial stdio \
        -device pc-testdev -device isa-debug-exit,iobase=0xf4,iosize=4 -m 256 -fw_cfg name=etc/sercon-port,string=0 \
        -kernel "$kernel" -initrd "$env_file" 2>&1 </dev/null)
    qrc=$?
    if [ $qrc -eq 124 ]; then qs=timeout; elif [ $((qrc % 2)) -eq 1 ]; then qs=$(((qrc - 1) / 2)); else qs="qemu $qrc"; fi
    printf '%-22s | %-8s | %-44s | %-8s | %s\n' "$t" "$vs" "$(summary "$out")" "$qs" "$(summary "$qout")"
done
