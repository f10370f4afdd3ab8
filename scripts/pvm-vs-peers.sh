#!/usr/bin/env bash
# Times the six benchmark programs as whole processes: `pvm run NAME`
# (interpreter) next to the same algorithms from ../shared/bench-peers under
# lua5.4 and luajit -joff. Interleaved rounds, median wall time.
# Needs: hyperfine, lua5.4, luajit (apt-get install hyperfine lua5.4 luajit).
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/bench-peers}
ROUNDS=${ROUNDS:-3}
cargo build --release -q -p pvm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
    for b in fib loop sieve collatz mandelbrot matmul; do
        hyperfine -N --style none --runs 1 --export-json "$tmp/$b.$r.json" \
            -n "pvm interp" "target/release/pvm run $b" \
            -n "lua5.4" "lua5.4 $PEERS/$b/$b.lua" \
            -n "luajit -joff" "luajit -joff $PEERS/$b/$b.lua" >/dev/null
    done
done
python3 - "$tmp" "$ROUNDS" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
benches = ["fib", "loop", "sieve", "collatz", "mandelbrot", "matmul"]
names = ["pvm interp", "lua5.4", "luajit -joff"]
t = {}
for b in benches:
    for r in range(1, rounds + 1):
        for res in json.load(open(f"{tmp}/{b}.{r}.json"))["results"]:
            t.setdefault((b, res["command"]), []).append(res["times"][0])
med = {k: statistics.median(v) for k, v in t.items()}
print("| program | " + " | ".join(names) + " | pvm / lua5.4 |")
print("|---|" + "---:|" * (len(names) + 1))
for b in benches:
    print(f"| {b} | " + " | ".join(f"{med[(b, n)]:.3f}" for n in names) + f" | {med[(b, 'pvm interp')] / med[(b, 'lua5.4')]:.2f} |")
for n in names:
    g = statistics.geometric_mean([med[(b, n)] / med[(b, "lua5.4")] for b in benches])
    print(f"geometric mean of time / lua5.4: {n}: {g:.2f}")
PY
