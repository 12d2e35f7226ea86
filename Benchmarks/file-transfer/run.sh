#!/usr/bin/env bash
# file_transfer: a file sent between two Kizuna hosts on loopback (built-in plugins: mutual
# TLS 1.3, SHA-256 verified end to end, written to disk), measured side by side with the
# tools people would use instead, in alternating rounds on the same file:
#   iperf3 (raw loopback TCP, memory to memory), a plain socket copy (no framing, no
#   verification), scp (OpenSSH, aes128-gcm), rsync over ssh, and `tar | ssh | tar` for a
#   tree of small files.
# Each transfer is compared byte for byte afterwards. Also reports the CPU seconds per GiB
# of both ends (Kizuna, the socket copy) and the peak resident memory of both hosts.
#
#   Benchmarks/file-transfer/run.sh [ROUNDS] [MIB] [TREE-FILES]    (defaults: 3, 512, 10000)
#
# Needs a release build (`swift build -c release`). The peer tools are installed with
# apt-get when missing and this runs as root; a tool that cannot be had is left out, and
# the line says so. ssh and scp run against a private sshd on a loopback port, with keys
# made for this run in its temporary folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
mib=${2:-512}
tree_files=${3:-10000}
bin=.build/release
[ -x $bin/kizuna ] && [ -f $bin/libKizunaFileTransfer.so ] || { echo "build first: swift build -c release" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }
# TOOL PACKAGE: installs PACKAGE if TOOL is missing and apt-get may be used.
want() {
  have "$1" && return 0
  if [ "$(id -u)" = 0 ] && have apt-get; then
    [ -n "${apt_updated:-}" ] || { apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || true
  fi
  have "$1" || echo "note: $1 is not installed ($2); its column is left out" >&2
}
want iperf3 iperf3
want ssh openssh-client
[ -x /usr/sbin/sshd ] || want sshd openssh-server
want rsync rsync

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
mkdir -p "$work/tree"
python3 - "$work/tree" "$tree_files" <<'EOF'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    folder = os.path.join(root, f"d{i // 100:03d}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(4096))
EOF

# Not run in $(…): a subshell's pids+= would be lost, and cleanup would kill nothing.
start_host() { # NAME; sets started to the host's pid
  $bin/kizuna run --plugins-dir "$work/plugins" --interface lo --socket "$work/$1.sock" --receive-dir "$work/$1-in" --accept auto \
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

# A private sshd on loopback for scp, rsync and tar | ssh.
ssh_ok=""
if [ -x /usr/sbin/sshd ] && have ssh; then
  mkdir -p "$work/ssh" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/client_key"
  cp "$work/ssh/client_key.pub" "$work/ssh/authorized_keys"
  ssh_port=$((40000 + RANDOM % 20000))
  cat > "$work/ssh/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/ssh/host_key
AuthorizedKeysFile $work/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $work/ssh/sshd.pid
Subsystem sftp internal-sftp
EOF
  /usr/sbin/sshd -f "$work/ssh/sshd_config" -D -e 2> "$work/ssh/sshd.log" &
  pids+=("$!")
  ssh_options=(-i "$work/ssh/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR)
  for _ in $(seq 100); do
    ssh "${ssh_options[@]}" -p "$ssh_port" "$(whoami)@127.0.0.1" true 2>/dev/null && { ssh_ok=1; break; }
    sleep 0.1
  done
  [ -n "$ssh_ok" ] || echo "note: the private sshd did not start ($(tail -1 "$work/ssh/sshd.log")); scp, rsync and tar | ssh are left out" >&2
fi
remote="$(whoami)@127.0.0.1"

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$bytes / ($2 - $1) / 1048576:.0f}')"; }           # START END -> MiB/s
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
# CPU seconds (user + system) of a process so far, from /proc.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
per_gib() { python3 -c "print(f'{($2 - $1) / ($bytes / 1073741824):.2f}')"; }  # CPU0 CPU1 -> CPU s per GiB
same() { cmp -s "$1" "$2" || { echo "round $round: $3 delivered a file that differs" >&2; exit 1; }; }
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

declare -a kizuna_rates iperf_rates copy_rates scp_rates rsync_rates kizuna_cpus copy_cpus
port=$((20000 + RANDOM % 20000))
TIMEFORMAT='%U %S'
for round in $(seq "$rounds"); do
  line="round $round:"
  if have iperf3; then
    # The same byte count over one loopback TCP connection, memory to memory.
    iperf3 -s -1 -p $port > /dev/null 2>&1 &
    server=$!
    sleep 0.3
    iperf=$(iperf3 -c 127.0.0.1 -p $port -n ${mib}M -J | python3 -c "import json,sys; print(round(json.load(sys.stdin)['end']['sum_received']['bits_per_second'] / 8 / 1048576))")
    wait "$server"  # (only it: the hosts are jobs of this shell too)
    iperf_rates+=("$iperf"); line+="  iperf3 $iperf"
  fi
  # A plain socket copy: the file over one connection into a file; CPU of both ends.
  rm -f "$work/copy.bin"
  t0=$(now)
  { time {
    python3 Benchmarks/file-transfer/socket_copy.py receive $port "$work/copy.bin" > "$work/copy.log" &
    receiver=$!
    until grep -q READY "$work/copy.log" 2>/dev/null; do sleep 0.05; done
    t0=$(now); python3 Benchmarks/file-transfer/socket_copy.py send $port "$work/payload.bin"; wait "$receiver"; t1=$(now)
    echo "$t0 $t1" > "$work/copy.times"
  }; } 2> "$work/copy.cpu"
  read -r t0 t1 < "$work/copy.times"
  copy=$(rate "$t0" "$t1")
  copy_cpu=$(python3 -c "u, s = open('$work/copy.cpu').read().split(); print(f'{(float(u) + float(s)) / ($bytes / 1073741824):.2f}')")
  same "$work/payload.bin" "$work/copy.bin" "the socket copy"
  copy_rates+=("$copy"); copy_cpus+=("$copy_cpu"); line+="  socket copy $copy"
  if [ -n "$ssh_ok" ]; then
    rm -f "$work/scp.bin"
    t0=$(now); scp -q "${ssh_options[@]}" -c aes128-gcm@openssh.com -P "$ssh_port" "$work/payload.bin" "$remote:$work/scp.bin"; t1=$(now)
    same "$work/payload.bin" "$work/scp.bin" "scp"
    scp_rate=$(rate "$t0" "$t1"); scp_rates+=("$scp_rate"); line+="  scp(aes128-gcm) $scp_rate"
    rm -f "$work/rsync.bin"
    t0=$(now); rsync -q -e "ssh ${ssh_options[*]} -p $ssh_port" "$work/payload.bin" "$remote:$work/rsync.bin"; t1=$(now)
    same "$work/payload.bin" "$work/rsync.bin" "rsync"
    rsync_rate=$(rate "$t0" "$t1"); rsync_rates+=("$rsync_rate"); line+="  rsync/ssh $rsync_rate"
  fi
  # Kizuna: host to host over TLS, chunked, backpressured, SHA-256 verified, renamed into place.
  rm -rf "$work/bo-in"
  c0=$(python3 -c "print($(cpu "$a") + $(cpu "$b"))")
  t0=$(now); $bin/kizuna send "$work/payload.bin" --to bo --quiet --socket "$work/aiko.sock" > /dev/null; t1=$(now)
  c1=$(python3 -c "print($(cpu "$a") + $(cpu "$b"))")
  same "$work/payload.bin" "$work/bo-in/payload.bin" "kizuna"
  kizuna=$(rate "$t0" "$t1"); kizuna_cpu=$(per_gib "$c0" "$c1")
  kizuna_rates+=("$kizuna"); kizuna_cpus+=("$kizuna_cpu")
  line+="  kizuna $kizuna MiB/s"
  [ -n "${iperf:-}" ] && line+="  (kizuna/iperf3 $(ratio "$kizuna" "$iperf")"
  [ -n "${scp_rate:-}" ] && line+=", kizuna/scp $(ratio "$kizuna" "$scp_rate"), kizuna/rsync $(ratio "$kizuna" "$rsync_rate")"
  line+="; CPU s/GiB both ends: kizuna $kizuna_cpu, socket copy $copy_cpu, ratio $(ratio "$kizuna_cpu" "$copy_cpu"))"
  echo "$line"
done

summary="file_transfer ${mib} MiB, median of $rounds:"
[ ${#iperf_rates[@]} -gt 0 ] && summary+=" iperf3 $(median "${iperf_rates[@]}") MiB/s,"
summary+=" socket copy $(median "${copy_rates[@]}") MiB/s,"
[ ${#scp_rates[@]} -gt 0 ] && summary+=" scp $(median "${scp_rates[@]}") MiB/s, rsync/ssh $(median "${rsync_rates[@]}") MiB/s,"
summary+=" kizuna $(median "${kizuna_rates[@]}") MiB/s; CPU s/GiB kizuna $(median "${kizuna_cpus[@]}"), socket copy $(median "${copy_cpus[@]}")"
echo "$summary"

# A tree of small files: Kizuna against tar | ssh | tar, once each.
tree_bytes=$((tree_files * 4096))
tree_rate() { python3 -c "print(f'{$tree_files / ($2 - $1):.0f} files/s ({$tree_bytes / ($2 - $1) / 1048576:.1f} MiB/s)')"; }
line="tree of $tree_files files of 4 KiB:"
if [ -n "$ssh_ok" ]; then
  mkdir -p "$work/tar-in"
  t0=$(now); tar -C "$work" -cf - tree | ssh "${ssh_options[@]}" -p "$ssh_port" "$remote" "tar -C $work/tar-in -xf -"; t1=$(now)
  diff -r "$work/tree" "$work/tar-in/tree" > /dev/null || { echo "tar | ssh delivered a tree that differs" >&2; exit 1; }
  line+="  tar|ssh|tar $(tree_rate "$t0" "$t1")"
fi
rm -rf "$work/bo-in"
t0=$(now); $bin/kizuna send "$work/tree" --to bo --quiet --socket "$work/aiko.sock" > /dev/null; t1=$(now)
diff -r "$work/tree" "$work/bo-in/tree" > /dev/null || { echo "kizuna delivered a tree that differs" >&2; exit 1; }
line+="  kizuna $(tree_rate "$t0" "$t1")"
echo "$line"

peak() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$1/status; }
echo "peak resident memory: sender (aiko) $(peak "$a"), receiver (bo) $(peak "$b")"
