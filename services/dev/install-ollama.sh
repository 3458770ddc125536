#!/usr/bin/env bash
# Build the real Ollama server (with its CPU engine) from the Go module proxy, outside the clone.
#
# The pinned release (OLLAMA_VERSION in webui/duet/versions.env) must be one whose engine (vendored
# ggml) builds with a plain `go install`: v0.24.0 is the last such release; later releases fetch
# llama.cpp through CMake at build time, which cannot work on a machine that reaches only package
# registries.
set -euo pipefail

# The pinned release, from the one file that declares the engine versions.
. "$(dirname "$0")/../../webui/duet/versions.env"
OLLAMA_VERSION="${DUET_OLLAMA_VERSION:-$OLLAMA_VERSION}"
CACHE="${DUET_CACHE:-$HOME/.cache/duet}"
DEST="$CACHE/ollama-$OLLAMA_VERSION"

if [ -x "$DEST/bin/ollama" ]; then
  echo "ollama $OLLAMA_VERSION already built in $DEST"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build Ollama (https://go.dev/doc/install)" >&2; exit 1; }
# Go module zips leave out every directory named "vendor", so the llama.cpp headers Ollama keeps
# in llama/llama.cpp/vendor are missing from what `go install` downloads. We supply the same
# single-header libraries from package registries: nlohmann-json and stb from Debian, miniaudio
# from the source distribution of PyPI's `miniaudio` (which bundles miniaudio.h).
MINIAUDIO_VERSION="1.71"
HEADERS="$CACHE/ollama-headers"
if [ ! -f /usr/include/nlohmann/json_fwd.hpp ] || [ ! -f /usr/include/stb/stb_image.h ]; then
  echo "installing nlohmann-json3-dev and libstb-dev (headers the Ollama build needs)"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq nlohmann-json3-dev libstb-dev
fi
if [ ! -f "$HEADERS/miniaudio/miniaudio.h" ]; then
  sdist_dir=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary :all: -d "$sdist_dir" "miniaudio==$MINIAUDIO_VERSION"
  mkdir -p "$HEADERS/miniaudio"
  tar -xzf "$sdist_dir"/miniaudio-*.tar.gz -C "$sdist_dir"
  cp "$sdist_dir"/miniaudio-*/miniaudio/miniaudio.h "$HEADERS/miniaudio/"
  rm -rf "$sdist_dir"
fi

echo "building ollama v$OLLAMA_VERSION into $DEST (first time: several minutes of cgo)"
mkdir -p "$DEST"
tmp_bin=$(mktemp -d)
trap 'rm -rf "$tmp_bin"' EXIT
# -X sets the version string Ollama reports (a plain `go install` leaves it at 0.0.0).
GOBIN="$tmp_bin" CGO_ENABLED=1 CGO_CPPFLAGS="-I$HEADERS" go install \
  -ldflags "-X github.com/ollama/ollama/version.Version=$OLLAMA_VERSION" \
  "github.com/ollama/ollama@v$OLLAMA_VERSION"
mkdir -p "$DEST/bin"
mv "$tmp_bin/ollama" "$DEST/bin/ollama"
"$DEST/bin/ollama" --version 2>/dev/null || true
