"""nginx in front of Duet, as a team runs it (services/nginx/duet.conf), started for a measurement.

`nginx_proxy(upstream_url, variant, workdir)` runs Debian's nginx (services/dev/install-nginx.sh)
as this process's own child, on free loopback ports, with its own prefix, logs and pid file
under `workdir`, and TLS from a certificate made there by openssl. Its site is the shipped file
with only the values that are a box's own changed (where Duet listens, the ports, the name, the
certificate), and, for the variants, the one line about buffering:

- "shipped": the file as shipped (`proxy_buffering off`);
- "header_only": `proxy_buffering on`, as in a site that never heard of event streams, where
  Duet's own `X-Accel-Buffering: no` on its streams is what keeps them unbuffered;
- "buffering": `proxy_buffering on` with that header ignored too: nginx holds a stream's events
  until a buffer fills, which is the proxy the relay benchmark and the tests must catch.

The block yields a `Proxy`: its URL (https on 127.0.0.1) and the certificate a client trusts it
by. nginx is stopped by its own process id when the block ends, and waited for.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from duet.bench.ports import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SITE = REPOSITORY_ROOT / "services" / "nginx" / "duet.conf"
INSTALL_HINT = "run services/dev/install-nginx.sh (`make test` does), or set DUET_NGINX"
START_SECONDS = 10.0
STOP_SECONDS = 10.0

Variant = Literal["shipped", "header_only", "buffering"]
VARIANTS: tuple[Variant, ...] = ("shipped", "header_only", "buffering")
# The shipped site's line about buffering, and what each variant puts in its place.
BUFFERING_OFF = "proxy_buffering off;"
BUFFERING_LINES: dict[Variant, str] = {
    "shipped": BUFFERING_OFF,
    "header_only": "proxy_buffering on;",
    "buffering": "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;",
}


class NginxError(RuntimeError):
    """nginx could not be found, configured or started (the message says which, and why)."""


def find_nginx() -> Path:
    """nginx: DUET_NGINX, else on PATH or in /usr/sbin, else the one install-nginx.sh unpacked."""
    configured = os.environ.get("DUET_NGINX")
    if configured:
        if not Path(configured).is_file():
            raise NginxError(f"DUET_NGINX={configured} is not a file")
        return Path(configured)
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found:
        return Path(found)
    cache = Path(os.environ.get("DUET_CACHE", Path.home() / ".cache" / "duet"))
    unpacked = sorted(cache.glob("nginx-*/usr/sbin/nginx"))
    if unpacked:
        return unpacked[-1]
    raise NginxError(f"no nginx found: {INSTALL_HINT}")


def replaced(text: str, old: str, new: str, count: int = 1) -> str:
    """`text` with `old` made `new`, where `old` must occur exactly `count` times: a site file
    that changed shape fails here instead of being run half-changed."""
    found = text.count(old)
    if found != count:
        raise NginxError(f"{SITE.name}: {old!r} occurs {found} times, expected {count}")
    return text.replace(old, new)


@dataclass(frozen=True)
class Box:
    """The values of the site file that are a box's own, for one proxy."""

    duet_port: int
    tls_port: int
    http_port: int
    certificate: Path
    key: Path


def site_for(box: Box, variant: Variant, text: str) -> str:
    """The shipped site `text` with this box's values, in `variant`."""
    text = replaced(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{box.duet_port};")
    text = replaced(text, "listen 443 ssl;", f"listen 127.0.0.1:{box.tls_port} ssl;")
    text = replaced(text, "listen 80;", f"listen 127.0.0.1:{box.http_port};")
    # IPv6 listeners are left out: a machine need not have IPv6.
    text = replaced(text, "    listen [::]:443 ssl;\n", "")
    text = replaced(text, "    listen [::]:80;\n", "")
    text = replaced(text, "/etc/nginx/tls/duet.lan.crt", str(box.certificate))
    text = replaced(text, "/etc/nginx/tls/duet.lan.key", str(box.key))
    # A loopback name, which Duet answers to without DUET_ALLOWED_HOSTS.
    text = replaced(text, "server_name duet.lan;", "server_name localhost;", count=2)
    return replaced(text, BUFFERING_OFF, BUFFERING_LINES[variant])


def main_config(prefix: Path, site: Path) -> str:
    """nginx.conf around the site: everything nginx writes stays under `prefix`."""
    # Started as root, nginx runs its workers as `nobody`, who cannot enter a 0700 temporary
    # folder such as pytest's.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {prefix / 'access.log'};\n{temp_paths}"
        f"    include {site};\n}}\n"
    )


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, valid for a day, and its key."""
    certificate, key = folder / "localhost.crt", folder / "localhost.key"
    openssl = shutil.which("openssl")
    if openssl is None:
        raise NginxError("openssl makes the proxy's certificate: apt-get install openssl")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return certificate, key


@dataclass(frozen=True)
class Proxy:
    """A running nginx in front of Duet: where to ask it, and what to trust it by."""

    url: str  # https://127.0.0.1:PORT, no trailing slash
    certificate: Path
    prefix: Path  # nginx's own folder: its configuration and error log
    variant: Variant

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this proxy's certificate (and no other)."""
        return ssl.create_default_context(cafile=str(self.certificate))


@contextmanager
def nginx_proxy(upstream_url: str, variant: Variant, workdir: Path) -> Iterator[Proxy]:
    """nginx with the shipped site in `variant`, in front of the Duet at `upstream_url`
    (http://127.0.0.1:PORT), until the block ends. `workdir` becomes its prefix."""
    duet_port = urlsplit(upstream_url).port
    if duet_port is None:
        raise NginxError(f"the upstream URL {upstream_url!r} names no port")
    workdir.mkdir(parents=True, exist_ok=True)
    certificate, key = self_signed(workdir)
    box = Box(duet_port, free_port(), free_port(), certificate, key)
    site = workdir / "duet.conf"
    site.write_text(site_for(box, variant, SITE.read_text()))
    config = workdir / "nginx.conf"
    config.write_text(main_config(workdir, site))
    error_log = workdir / "error.log"
    command = [str(find_nginx()), "-p", str(workdir), "-c", str(config), "-e", str(error_log)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    if checked.returncode != 0:
        raise NginxError(f"nginx refused the configuration:\n{checked.stderr}")
    # Its log goes to `error_log` (-e and the configuration's error_log).
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(box.tls_port, process, error_log)
        yield Proxy(f"https://127.0.0.1:{box.tls_port}", certificate, workdir, variant)
    finally:
        process.send_signal(signal.SIGTERM)  # nginx's fast shutdown
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = error_log.read_text(errors="replace") if error_log.exists() else ""
            raise NginxError(f"nginx exited ({process.returncode}):\n{log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise NginxError(f"nginx did not listen on port {port} within {START_SECONDS:g} s")
