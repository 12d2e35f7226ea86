#!/usr/bin/env bash
# Installs kizuna: PREFIX/lib/kizuna/ holds the binary, the built-in plugins' libraries and
# their manifests, and the plugin SDK (which `kizuna plugin new` builds against);
# PREFIX/bin/kizuna links to the binary. Run it again to update; the old install is
# replaced only once the new one is complete.
#
#   ./install.sh [--prefix DIR] [--debug] [--no-build]
#
# --prefix DIR   where to install (default: ~/.local; /usr/local needs root)
# --debug        install the debug build (default: release, built with `swift build -c release`)
# --no-build     install what is built already
set -euo pipefail
cd "$(dirname "$0")"

prefix="$HOME/.local" configuration=release build=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a folder" >&2; exit 64; }; prefix="$2"; shift 2 ;;
    --debug) configuration=debug; shift ;;
    --no-build) build=no; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option '$1'; use --prefix DIR, --debug, --no-build" >&2; exit 64 ;;
  esac
done

if [ "$build" = yes ]; then swift build -c "$configuration"; fi
built=".build/$configuration"
[ -x "$built/kizuna" ] || { echo "install.sh: $built/kizuna is not built; run without --no-build" >&2; exit 1; }

mkdir -p "$prefix/bin" "$prefix/lib"
prefix="$(cd "$prefix" && pwd)"
target="$prefix/lib/kizuna"
staging="$(mktemp -d "$prefix/lib/.kizuna-install.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

cp "$built/kizuna" "$staging/"
for library in "$built"/lib*.so; do
  case "$(basename "$library")" in libFixture*) ;; *) cp "$library" "$staging/" ;; esac
done
mkdir "$staging/manifests"
cp manifests/*.toml "$staging/manifests/"
# The SDK's sources, without anything built in it.
(tar -C . --exclude=.build --exclude=Package.resolved -cf - plugin-sdk) | tar -C "$staging" -xf -
chmod 755 "$staging"

# Swap the complete new install in; the old one goes only after.
if [ -e "$target" ]; then
  old="$(mktemp -d "$prefix/lib/.kizuna-old.XXXXXX")"
  mv "$target" "$old/kizuna"
  mv "$staging" "$target"
  rm -rf "$old"
else
  mv "$staging" "$target"
fi
ln -sfn "$target/kizuna" "$prefix/bin/kizuna"

echo "installed kizuna ($configuration) in $target, linked from $prefix/bin/kizuna"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "add $prefix/bin to PATH to run it as kizuna: export PATH=\"$prefix/bin:\$PATH\"" ;; esac
