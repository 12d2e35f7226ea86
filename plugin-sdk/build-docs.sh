#!/usr/bin/env bash
# Builds the SDK's documentation (the DocC catalog in Sources/KizunaSDK/KizunaSDK.docc,
# with the API reference) with the docc that comes with the Swift toolchain.
#
#   plugin-sdk/build-docs.sh [OUTPUT]     # default: plugin-sdk/.build/docs
#
# Then open OUTPUT/index.html through a web server (`python3 -m http.server -d OUTPUT`),
# or preview while writing: docc preview Sources/KizunaSDK/KizunaSDK.docc
# --additional-symbol-graph-dir .build/symbol-graphs
set -euo pipefail
cd "$(dirname "$0")"
output="${1:-.build/docs}"
graphs=.build/symbol-graphs
mkdir -p "$graphs"
swift build --target KizunaSDK -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$PWD/$graphs"
docc convert Sources/KizunaSDK/KizunaSDK.docc \
  --fallback-display-name KizunaSDK --fallback-bundle-identifier dev.kizuna.sdk \
  --additional-symbol-graph-dir "$graphs" \
  --output-path "$output"
echo "documentation in $output (serve it: python3 -m http.server -d $output)"
