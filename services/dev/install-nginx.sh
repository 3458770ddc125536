#!/usr/bin/env bash
# Debian's nginx for the reverse-proxy test (tests/test_nginx_proxy.py), which runs it in front
# of Duet with services/nginx/duet.conf.
#
# The package is unpacked into the cache rather than installed: installing it enables and
# starts a system nginx on port 80 (and fails where port 80 is taken), while the test runs its
# own nginx on free ports, with its own prefix, configuration and logs. An nginx already on the
# machine is used as it is. Prints the binary's path last. Safe to run again.
set -euo pipefail

CACHE="${DUET_CACHE:-$HOME/.cache/duet}"

installed="$(command -v nginx || true)"
[ -n "$installed" ] || { [ -x /usr/sbin/nginx ] && installed=/usr/sbin/nginx; }
if [ -n "$installed" ]; then
  echo "nginx already installed: $("$installed" -v 2>&1)" >&2
  echo "$installed"
  exit 0
fi

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

candidate() { apt-cache policy nginx 2>/dev/null | sed -n 's/^  Candidate: //p'; }
version="$(candidate)"
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "refreshing apt package lists" >&2
  $sudo_cmd apt-get update -qq
  version="$(candidate)"
fi
[ -n "$version" ] && [ "$version" != "(none)" ] || { echo "error: apt knows no nginx package" >&2; exit 1; }

DEST="$CACHE/nginx-$version"
BIN="$DEST/usr/sbin/nginx"
if [ ! -x "$BIN" ]; then
  echo "unpacking Debian's nginx $version into $DEST" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt-get download needs no root; as root it warns that the download is not sandboxed.
  (cd "$work" && apt-get download -q "nginx=$version" 2>&1 | grep -v "unsandboxed" >&2 || true)
  deb=$(ls "$work"/nginx_*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || { echo "error: could not download nginx $version" >&2; exit 1; }
  dpkg-deb -x "$deb" "$work/root"
  mkdir -p "$(dirname "$DEST")"
  rm -rf "$DEST"
  mv "$work/root" "$DEST"
fi

# Its libraries (OpenSSL, PCRE2, zlib) are the package's dependencies, not unpacked with it.
missing=$(ldd "$BIN" | sed -n 's/^[[:space:]]*\([^ ]*\) => not found$/\1/p')
if [ -n "$missing" ]; then
  echo "error: nginx needs libraries this machine lacks: $missing" >&2
  echo "install them with: $sudo_cmd apt-get install libssl3 libpcre2-8-0 zlib1g libcrypt1" >&2
  exit 1
fi
"$BIN" -v 2>&1 | sed 's/^/installed /' >&2
echo "$BIN"
