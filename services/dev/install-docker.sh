#!/usr/bin/env bash
# Install what the compose tests need (tests/test_compose_stack.py): Debian's Docker engine
# (docker.io: dockerd, containerd, runc) and debootstrap, which builds the base images no
# registry can give us here (services/compose-test/build-images.sh).
#
# Nothing is started here, and nothing is enabled at boot: the tests start their own dockerd
# with its data under the cache and stop it again (tests/docker_daemon.py). Debian's package
# would otherwise start a daemon from its postinst on a machine with an init system; the
# policy-rc.d that Debian's docker images carry already forbids that in a container, and
# RUNLEVEL=1 keeps invoke-rc.d from starting it elsewhere.
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
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo_cmd apt-get install -y -qq \
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
