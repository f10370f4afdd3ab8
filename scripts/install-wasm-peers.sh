#!/usr/bin/env bash
# Installs what the WebAssembly programs and their peers need
# (docs/wasm-programs.md); idempotent: whatever is already there is kept.
#
#   scripts/install-wasm-peers.sh            the toolchain and every peer
#   scripts/install-wasm-peers.sh --build    only what building needs (clang for wasm32-wasi, node for the tests)
#
# - apt: clang lld wasi-libc libclang-rt-14-dev-wasm32 (the wasm32-wasi C
#   toolchain build.rs uses), nodejs (V8 Liftoff and TurboFan), gcc (native)
# - pip: wasmtime (wasmtime-py, its CLI's engine), pywasm3 (wasm3)
# - cargo: wasmi_cli (the `wasmi` binary)
# WASMTIME_CLI=1 also builds the wasmtime CLI from crates.io (long: many
# minutes); without it the harness runs wasmtime through wasmtime-py.
set -euo pipefail

PYWASM3=0.5.0
WASMTIME_PY=50.0.1
WASMI_CLI=2.0.0
WASMTIME_CLI_VERSION=${WASMTIME_CLI_VERSION:-36.0.2}

build_only=0
if [ "${1:-}" = "--build" ]; then build_only=1; fi

sudo=()
if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi

# Packages dpkg does not list as installed, among "$@".
missing_debs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

debs=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
command -v node >/dev/null || debs+=(nodejs)
if [ "$build_only" = 0 ]; then command -v gcc >/dev/null || debs+=(gcc); fi
mapfile -t want < <(missing_debs "${debs[@]}")
if [ "${#want[@]}" -gt 0 ]; then
    echo "install-wasm-peers: apt-get install ${want[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${want[@]}"
fi
# The runners use node:wasi with version 'preview1' (Node 20; Debian 12's own nodejs 18 has it behind the flag).
if ! node --no-warnings --experimental-wasi-unstable-preview1 -e 'new (require("node:wasi").WASI)({ version: "preview1" })'; then
    echo "install-wasm-peers: this node ($(node --version)) has no usable node:wasi: install Node 20 or newer" >&2
    exit 1
fi

if [ "$build_only" = 1 ]; then exit 0; fi

py_has() { python3 -c "import importlib.metadata as m; assert m.version('$1') == '$2'" 2>/dev/null; }
for spec in "pywasm3==$PYWASM3" "wasmtime==$WASMTIME_PY"; do
    if ! py_has "${spec%%==*}" "${spec##*==}"; then
        echo "install-wasm-peers: pip install $spec"
        # Debian's own python3 refuses system-wide pip installs (PEP 668); --user is enough for the harness.
        python3 -m pip install -q "$spec" || python3 -m pip install -q --user --break-system-packages "$spec"
    fi
done

if ! wasmi --version 2>/dev/null | grep -qx "wasmi $WASMI_CLI"; then
    echo "install-wasm-peers: cargo install wasmi_cli $WASMI_CLI"
    cargo install wasmi_cli --version "$WASMI_CLI" --locked
fi

if [ "${WASMTIME_CLI:-0}" = 1 ] && ! command -v wasmtime >/dev/null; then
    echo "install-wasm-peers: cargo install wasmtime-cli $WASMTIME_CLI_VERSION (this takes a while)"
    cargo install wasmtime-cli --version "$WASMTIME_CLI_VERSION" --locked
fi
echo "install-wasm-peers: done"
