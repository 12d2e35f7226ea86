#!/usr/bin/env bash
# Coverage-guided fuzzing of one built-in plugin's decoders with the toolchain's libFuzzer.
#
#   Tests/Fuzz/libfuzzer.sh NAME [libFuzzer options…]
#
# NAME is tcp-transport, file-transfer, streaming or mdns-discovery. The plugin is built
# with coverage instrumentation and AddressSanitizer into .build-fuzz, linked to a small
# driver, and run on a copy of its seeds (Tests/Fuzz/Seeds/NAME) until stopped or until
# an option such as -max_total_time=600 or -runs=1000000 ends it. A crash leaves its
# input as crash-* in .build-fuzz/NAME; `kizuna fuzz LIBRARY` with that file in a seeds
# folder replays it against a normal build.
set -euo pipefail
cd "$(dirname "$0")/../.."

name=${1:-}
case "$name" in
  tcp-transport) product=KizunaTransportTCP ;;
  file-transfer) product=KizunaFileTransfer ;;
  streaming) product=KizunaStreaming ;;
  mdns-discovery) product=KizunaDiscoveryMDNS ;;
  *) echo "usage: $0 tcp-transport|file-transfer|streaming|mdns-discovery [libFuzzer options…]" >&2; exit 2 ;;
esac
shift

scratch=.build-fuzz
swift build --scratch-path "$scratch" --product "$product" \
  -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table
work="$scratch/$name"
mkdir -p "$work/corpus"
cp -n Tests/Fuzz/Seeds/"$name"/* "$work/corpus/" 2>/dev/null || true
clang=$(dirname "$(command -v swiftc)")/clang
"$clang" -g -fsanitize=fuzzer,address Tests/Fuzz/driver.c -L"$PWD/$scratch/debug" -l"$product" -Wl,-rpath,"$PWD/$scratch/debug" \
  -o "$work/fuzz" 2>"$work/link.log" || { cat "$work/link.log" >&2; exit 1; }
cd "$work"
exec ./fuzz corpus "$@"
