#!/usr/bin/env bash
# file_transfer: a file sent between two Kizuna hosts on loopback (built-in plugins,
# SHA-256 verified at the receiver, written to disk), measured side by side with raw
# loopback TCP (iperf3) and a plain socket copy of the same file, in alternating rounds.
# Also reports the peak resident memory of both hosts during the transfer.
#
#   Benchmarks/file-transfer/run.sh [ROUNDS] [MIB]       (defaults: 3 rounds, 512 MiB)
#
# Needs iperf3 (apt-get install iperf3) and a release build (`swift build -c release`).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
mib=${2:-512}
bin=.build/release
command -v iperf3 >/dev/null || { echo "iperf3 is needed: apt-get install iperf3" >&2; exit 1; }
[ -x $bin/kizuna ] && [ -f $bin/libKizunaFileTransfer.so ] || { echo "build first: swift build -c release" >&2; exit 1; }

work=$(mktemp -d /tmp/kizuna-bench-XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/plugins"
type="_kzb$RANDOM._tcp"
for manifest in manifests/*.toml; do
  sed "s/service-type = \"_kizuna._tcp\"/service-type = \"$type\"/" "$manifest" > "$work/plugins/$(basename "$manifest")"
done
head -c $((mib << 20)) /dev/urandom > "$work/payload.bin"
bytes=$((mib << 20))

# Not run in $(…): a subshell's pids+= would be lost, and cleanup would kill nothing.
start_host() { # NAME; sets started to the host's pid
  $bin/kizuna run --plugins-dir "$work/plugins" --socket "$work/$1.sock" --receive-dir "$work/$1-in" --accept auto \
    --name "$1" --state-dir "$work/$1-state" --quiet > "$work/$1.log" 2>&1 &
  started=$!
  pids+=("$started")
}
start_host aiko; a=$started
start_host bo; b=$started
for _ in $(seq 300); do
  $bin/kizuna peers --json --socket "$work/aiko.sock" 2>/dev/null | grep -q '"bo"' && break
  sleep 0.1
done

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$bytes / ($2 - $1) / 1048576:.0f}')"; } # START END -> MiB/s

declare -a kizuna_rates iperf_rates copy_rates
port=$((20000 + RANDOM % 20000))
for round in $(seq "$rounds"); do
  # iperf3: the same byte count over one loopback TCP connection, memory to memory.
  iperf3 -s -1 -p $port > /dev/null 2>&1 &
  server=$!
  sleep 0.3
  iperf=$(iperf3 -c 127.0.0.1 -p $port -n ${mib}M -J | python3 -c "import json,sys; print(round(json.load(sys.stdin)['end']['sum_received']['bits_per_second'] / 8 / 1048576))")
  wait "$server"  # (only it: the hosts are jobs of this shell too)
  # A plain socket copy: the file over one connection into a file.
  rm -f "$work/copy.bin"
  python3 Benchmarks/file-transfer/socket_copy.py receive $port "$work/copy.bin" > "$work/copy.log" &
  receiver=$!
  until grep -q READY "$work/copy.log" 2>/dev/null; do sleep 0.05; done
  t0=$(now); python3 Benchmarks/file-transfer/socket_copy.py send $port "$work/payload.bin"; wait "$receiver"; t1=$(now)
  copy=$(rate "$t0" "$t1")
  # Kizuna: host to host, chunked, backpressured, SHA-256 verified, renamed into place.
  rm -rf "$work/bo-in"
  t0=$(now); $bin/kizuna send "$work/payload.bin" --to bo --quiet --socket "$work/aiko.sock" > /dev/null; t1=$(now)
  cmp -s "$work/payload.bin" "$work/bo-in/payload.bin" || { echo "round $round: the received file differs" >&2; exit 1; }
  kizuna=$(rate "$t0" "$t1")
  echo "round $round: iperf3 $iperf MiB/s   socket copy $copy MiB/s   kizuna $kizuna MiB/s   (kizuna/iperf3 $(python3 -c "print(f'{$kizuna/$iperf:.2f}')"), kizuna/copy $(python3 -c "print(f'{$kizuna/$copy:.2f}')"))"
  kizuna_rates+=("$kizuna"); iperf_rates+=("$iperf"); copy_rates+=("$copy")
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
peak() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$1/status; }
echo "file_transfer ${mib} MiB, median of $rounds: iperf3 $(median "${iperf_rates[@]}") MiB/s, socket copy $(median "${copy_rates[@]}") MiB/s, kizuna $(median "${kizuna_rates[@]}") MiB/s"
echo "peak resident memory: sender (aiko) $(peak "$a"), receiver (bo) $(peak "$b")"
