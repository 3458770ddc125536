#!/usr/bin/env bash
# Install what the compose tests need (tests/test_compose_stack.py): Debian's Docker engine
# (docker.io: dockerd, containerd, runc) and debootstrap, which builds the base images no
# registry can give us here (services/compose-test/build-images.sh).
#
# The tests start a dockerd of their own, with its data under the cache, and stop it again
# (tests/docker_daemon.py); they refuse to start it beside another dockerd, which would share
# its default bridge. On a machine without an init system (CI, a container) the package's
# postinst starts nothing; on one with systemd, Debian's package enables and starts the
# system's Docker, which has to be stopped (`systemctl stop docker docker.socket`) before the
# compose test runs.
#
# Docker Compose comes from services/dev/install-compose.sh (Debian's docker-compose is the
# retired Python implementation). Safe to run again: an installed package is left alone.
set -euo pipefail

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

missing=()
for tool in dockerd:docker.io debootstrap:debootstrap iptables:iptables; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "docker.io and debootstrap already installed: $(dockerd --version)"
  exit 0
fi

install() {
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
    --no-install-recommends "${missing[@]}"
}
echo "installing ${missing[*]} from Debian"
# Refresh the package lists only when apt does not know a package, or names a version the
# mirror no longer has.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1 || ! install; then
  echo "refreshing apt package lists"
  $sudo_cmd apt-get update -qq
  install
fi
dockerd --version
