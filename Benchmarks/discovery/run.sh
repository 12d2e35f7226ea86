#!/usr/bin/env bash
# Discovery on a LAN of its own: N hosts (default 10), each in a network namespace with
# an eth0 on one bridge, run with the built-in manifests. Prints, per host, the seconds
# from its start until every other host lists it, then the mDNS packets each host sends
# per minute once all are idle (SETTLE seconds later, default 35; counted for SECONDS,
# default 60, by a listener on the link that tells hosts apart by source address).
#
# Usage: Benchmarks/discovery/run.sh [HOSTS] [SECONDS] [KIZUNA]   (root; iproute2, python3)
# KIZUNA defaults to .build/release/kizuna, else .build/debug/kizuna. With LEGACY=1 each
# host's manifests get interface and listen-host set to its address (for builds from
# before discovery chose its interfaces itself).
set -euo pipefail
cd "$(dirname "$0")/../.."
hosts=${1:-10}
seconds=${2:-60}
bin=${3:-}
if [ -z "$bin" ]; then
  if [ -x .build/release/kizuna ]; then bin=.build/release/kizuna; else bin=.build/debug/kizuna; fi
fi
bin=$(realpath "$bin")
manifests=$(realpath "${MANIFESTS:-manifests}")
work=$(mktemp -d /tmp/kizuna-discovery-bench.XXXXXX)
prefix="kzb$$"
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  wait 2>/dev/null
  for i in $(seq 1 "$hosts"); do ip netns delete "$prefix-h$i" 2>/dev/null || true; done
  ip netns delete "$prefix-br" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$prefix-br"
ip -n "$prefix-br" link add br0 type bridge
ip -n "$prefix-br" link set br0 up
for i in $(seq 1 "$hosts"); do
  ns="$prefix-h$i"
  ip netns add "$ns"
  ip -n "$prefix-br" link add "p$i" type veth peer name eth0 netns "$ns"
  ip -n "$prefix-br" link set "p$i" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
done

# The listener: in the first host's namespace, every packet to the group, by source.
python3 - "$prefix-h1" "$work/listener.py" <<'PY'
import sys
open(sys.argv[2], "w").write('''
import select, socket, struct, sys, time, collections
four = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for s in (four, six):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
four.bind(("", 5353))
six.bind(("::", 5353))
four.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton("224.0.0.251"), socket.inet_aton("10.77.0.1")))
six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, struct.pack("16sI", socket.inet_pton(socket.AF_INET6, "ff02::fb"), socket.if_nametoindex("eth0")))
counts = collections.Counter()
end = time.time() + float(sys.argv[1])
while True:
    left = end - time.time()
    if left <= 0: break
    ready, _, _ = select.select([four, six], [], [], left)
    for s in ready:
        data, source = s.recvfrom(9000)
        counts[("IPv4" if s is four else "IPv6", source[0])] += 1
for (family, source), count in sorted(counts.items()):
    print(family, source, count)
''')
PY

start=$(date +%s.%N)
for i in $(seq 1 "$hosts"); do
  plugins="$work/plugins-$i"
  mkdir -p "$plugins"
  for manifest in "$manifests"/*.toml; do
    if [ "${LEGACY:-0}" = 1 ]; then
      sed -e "s/^interface = .*/interface = \"10.77.0.$i\"/" -e "s/^listen-host = .*/listen-host = \"10.77.0.$i\"/" "$manifest" > "$plugins/$(basename "$manifest")"
    else
      cp "$manifest" "$plugins/"
    fi
  done
  ip netns exec "$prefix-h$i" "$bin" run --plugins-dir "$plugins" --socket "$work/h$i.sock" --state-dir "$work/h$i-state" \
    --receive-dir "$work/h$i-in" --name "host$i" > "$work/h$i.log" 2>&1 &
  pids+=("$!")
  echo "$i $(date +%s.%N)" >> "$work/started"
done

# Seconds from each host's start until every other host lists it.
for i in $(seq 1 "$hosts"); do
  until [ -S "$work/h$i.sock" ] && "$bin" id --state-dir "$work/h$i-state" --json > "$work/h$i.id" 2>/dev/null; do sleep 0.1; done
done
python3 - "$work" "$hosts" "$bin" <<'PY'
import json, subprocess, sys, time
work, hosts, kizuna = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ids = {i: json.load(open(f"{work}/h{i}.id"))["id"] for i in range(1, hosts + 1)}
started = {int(line.split()[0]): float(line.split()[1]) for line in open(f"{work}/started")}
listed_at = {}
deadline = time.time() + 120
while len(listed_at) < hosts and time.time() < deadline:
    seen = {}
    for j in range(1, hosts + 1):
        out = subprocess.run([kizuna, "peers", "--json", "--socket", f"{work}/h{j}.sock"], capture_output=True, text=True).stdout
        seen[j] = {p["id"] for p in json.loads(out or "[]")}
    now = time.time()
    for i in range(1, hosts + 1):
        if i not in listed_at and all(ids[i] in seen[j] for j in seen if j != i):
            listed_at[i] = now - started[i]
    time.sleep(0.1)
times = sorted(listed_at.values())
print(f"listed by all {hosts - 1} others: {len(times)}/{hosts} hosts; seconds from start: median {times[len(times)//2]:.2f}, max {times[-1]:.2f}" if times else "no host was listed by all others")
PY

# Idle: past the first queries (at 0, 1, 3, 7, 15 and 31 s) unless SETTLE says otherwise.
settle=${SETTLE:-35}
sleep "$settle"
echo "idle ($settle s after all were listed): counting packets for $seconds s"
ip netns exec "$prefix-h1" python3 "$work/listener.py" "$seconds" > "$work/counts"
python3 - "$work/counts" "$seconds" <<'PY'
import sys, collections
seconds = float(sys.argv[2])
by_family = collections.defaultdict(list)
for line in open(sys.argv[1]):
    family, source, count = line.split()
    by_family[family].append(int(count) * 60 / seconds)
for family, rates in sorted(by_family.items()):
    rates.sort()
    print(f"{family}: packets per minute per host ({len(rates)} hosts sending): median {rates[len(rates)//2]:.1f}, max {rates[-1]:.1f}, all {sum(rates):.1f}")
PY
