#!/usr/bin/env bash
# Build Docker Compose (the real Go implementation) from the Go module proxy, outside the clone,
# so CI can check docker-compose.yml with `docker-compose config` on a machine with no Docker engine.
#
# Why these choices:
# - Debian bookworm's `docker-compose` package is 1.29.2, the retired Python implementation; it
#   predates the Compose Specification features the file uses (`!override`, `start_interval`).
# - `go install github.com/docker/compose/v5/cmd@vX` is refused: Compose's go.mod carries `exclude`
#   directives, which Go honours only for the main module. So we download the module source through
#   the proxy and build it as the main module instead.
# - v5.5.1 is pinned: v5.6.0 needs a dependency version the module proxy does not serve, and v5.7.0
#   needs Go >= 1.26.10. v5.5.1 needs Go >= 1.26.3.
#
# Idempotent: a binary already built for this version is left alone. Prints the binary's path last.
set -euo pipefail

COMPOSE_VERSION="${DUET_COMPOSE_VERSION:-5.5.1}"
CACHE="${DUET_CACHE:-$HOME/.cache/duet}"
DEST="$CACHE/compose-$COMPOSE_VERSION"
BIN="$DEST/bin/docker-compose"
MODULE="github.com/docker/compose/v5"

if [ -x "$BIN" ]; then
  echo "docker-compose $COMPOSE_VERSION already built in $DEST" >&2
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build Docker Compose (https://go.dev/doc/install)" >&2; exit 1; }

echo "building docker-compose v$COMPOSE_VERSION into $DEST (first time: a few minutes)" >&2
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# A throwaway module to run `go mod download` from; it prints where the source landed.
(cd "$work" && go mod init duet-compose-download >/dev/null 2>&1)
source_dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$MODULE@v$COMPOSE_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$source_dir" ] && [ -d "$source_dir" ] || { echo "error: could not download $MODULE@v$COMPOSE_VERSION" >&2; exit 1; }

# The module cache is read-only; build from a writable copy.
cp -r "$source_dir" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$DEST/bin"
(cd "$work/src" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath \
  -ldflags "-w -X $MODULE/internal.Version=v$COMPOSE_VERSION" \
  -o "$BIN.partial" ./cmd)
mv "$BIN.partial" "$BIN"
"$BIN" version >&2
echo "$BIN"
