#!/usr/bin/env bash
# Runs Kizuna's runtime benchmark and the seed's tokio reference (../shared/bench) in
# alternation, ROUNDS times each, and prints the median per-round time ratio for every
# workload (kizuna seconds / tokio seconds: below 1.0 means Kizuna is faster).
# Usage: Benchmarks/compare-runtime.sh [ROUNDS]   (default 5)
set -euo pipefail
rounds=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
reference="$here/../shared/bench/tokio-seed/run.sh"
[ -x "$reference" ] || { echo "no tokio reference at $reference; it ships in shared/bench" >&2; exit 2; }

(cd "$here" && swift build -c release --product kizuna-bench >/dev/null)
bash "$reference" 0  # builds the reference without running it
target=${CARGO_TARGET_DIR:-/tmp/tokio-seed-target}
out=$(mktemp -d)
for round in $(seq 1 "$rounds"); do
  WORKERS=2 "$here/.build/release/kizuna-bench" > "$out/kizuna-$round.jsonl"
  WORKERS=2 "$target/release/tokio-seed-bench" > "$out/tokio-$round.jsonl"
  echo "round $round of $rounds done" >&2
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
folder, rounds = sys.argv[1], int(sys.argv[2])
def load(name, r):
    return {row["workload"]: row for row in map(json.loads, open(f"{folder}/{name}-{r}.jsonl"))}
ratios = {}
for r in range(1, rounds + 1):
    ours, theirs = load("kizuna", r), load("tokio", r)
    for workload, row in theirs.items():
        if workload in ours:
            ratios.setdefault(workload, []).append(ours[workload]["seconds"] / row["seconds"])
print(f"{'workload':28} {'median ratio':>12}  per-round ratios (kizuna/tokio, {rounds} rounds)")
for workload, values in ratios.items():
    print(f"{workload:28} {statistics.median(values):12.2f}  " + " ".join(f"{v:.2f}" for v in values))
PY
