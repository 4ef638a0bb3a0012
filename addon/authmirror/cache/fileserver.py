"""The nginx that sends cached files, and the signed, short-lived URLs it accepts.

    /sha256/<2 hex>/<64 hex>?expires=<unix time>&sig=<base64url HMAC-SHA256(key, path "\\n" expires)>

nginx checks the signature and expiry with a few lines of njs (nginx's JavaScript module) and then
sends the file with sendfile; an expired or tampered URL gets 403. The HMAC covers the path, which
holds the digest, and the expiry. The key is derived from the mirror's token signing key and lives
only in the mirror and in nginx's config (mode 0600).

`managed: true` (default): the mirror runs nginx as its child on the configured address (default:
a free port on 127.0.0.1), with its PID file, config and error log in <cache dir>/nginx/; it is
stopped with the mirror, and dies with it (PR_SET_PDEATHSIG) if the mirror is killed.
`managed: false`: the mirror only writes <cache dir>/nginx/nginx.conf for an nginx you run.
"""

from __future__ import annotations

import base64
import ctypes
import grp
import hashlib
import hmac
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..errors import ConfigError
from .settings import FileServerConfig

log = logging.getLogger("authmirror.cache")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
INSTALL_HINT = "install it: apt-get install nginx libnginx-mod-http-js (./scripts/bootstrap.sh does)"

LINK_JS = r"""// Written by authmirror: checks the mirror's signed cache URLs (see cache/fileserver.py).
var crypto = require('crypto');

function same(a, b) {
    if (typeof a !== 'string' || a.length !== b.length) return false;
    var diff = 0;
    for (var i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    return diff === 0;
}

function verify(r) {
    var expires = r.args.expires;
    if (!/^[0-9]{1,12}$/.test(expires || '') || Number(expires) < Date.now() / 1000) return '0';
    var mac = crypto.createHmac('sha256', r.variables.authmirror_link_key)
        .update(r.uri + '\n' + expires).digest('base64url');
    return same(r.args.sig, mac) ? '1' : '0';
}

export default {verify};
"""

NGINX_CONF = """# Written by authmirror at every start (cache file server); edits are overwritten.
{load_module}{user}daemon off;
master_process on;
worker_processes auto;
pid {state}/nginx.pid;
error_log {state}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65s;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {state}/tmp/body;
    proxy_temp_path {state}/tmp/proxy;
    fastcgi_temp_path {state}/tmp/fastcgi;
    uwsgi_temp_path {state}/tmp/uwsgi;
    scgi_temp_path {state}/tmp/scgi;
    js_import link from {state}/link.js;
    js_set $authmirror_link_ok link.verify;

    server {{
        listen {listen};
        root {root};
        set $authmirror_link_key "{key}";
        error_page 403 @denied;
        error_page 404 @unknown;

        location ~ "^/sha256/[0-9a-f]{{2}}/([0-9a-f]{{64}})$" {{
            limit_except GET {{ deny all; }}
            if ($authmirror_link_ok != "1") {{ return 403; }}
            add_header Docker-Content-Digest "sha256:$1";
            add_header Cache-Control "private, no-transform";
        }}
        location / {{ return 404; }}
        location @denied {{
            default_type application/json;
            return 403 '{{"errors":[{{"code":"DENIED","message":"blob link expired or invalid: pull the image again through the mirror"}}]}}';
        }}
        location @unknown {{
            default_type application/json;
            return 404 '{{"errors":[{{"code":"BLOB_UNKNOWN","message":"blob unknown to the mirror cache: pull the image again"}}]}}';
        }}
    }}
}}
"""


def sign_path(key: str, digest: str, expires: int) -> str:
    """The file server path (with query) for `digest`, valid until `expires` (unix time).
    `key` is the hex text nginx's config holds (njs uses it as the HMAC key as it is)."""
    hex_digest = digest.split(":", 1)[1]
    path = f"/sha256/{hex_digest[:2]}/{hex_digest}"
    mac = hmac.new(key.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return f"{path}?expires={expires}&sig={base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class FileServer:
    def __init__(self, settings: FileServerConfig, root: Path, state_dir: Path, key: bytes):
        self.settings = settings
        self.root = root
        self.state = state_dir
        self.key = key.hex()
        self.host = settings.listen.host if settings.listen else "127.0.0.1"
        self.port = settings.listen.port if settings.listen else 0
        self.process: subprocess.Popen | None = None

    @property
    def config_path(self) -> Path:
        return self.state / "nginx.conf"

    @property
    def internal_address(self) -> tuple[str, int]:
        """Where the mirror itself reaches nginx (serve: proxy)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("::1" if self.host == "::" else self.host)
        return host, self.port

    def internal_url(self, digest: str, expires: int) -> str:
        host, port = self.internal_address
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return f"http://{netloc}{sign_path(self.key, digest, expires)}"

    def public_url(self, digest: str, expires: int) -> str:
        base = self.settings.public_url or "http://{}:{}".format(*self.internal_address)
        return base + sign_path(self.key, digest, expires)

    def alive(self) -> bool:
        """Is the managed nginx still running? (An unmanaged one is the operator's to watch.)"""
        return not self.settings.managed or (self.process is not None and self.process.poll() is None)

    # -- process ------------------------------------------------------------------------------

    def start(self) -> None:
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.state / "tmp" / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.settings.managed:
            self._write_config()
            log.info("cache: serving cached files needs your nginx: nginx -c %s (listening on %s:%d)", self.config_path, self.host, self.port)
            return
        binary = shutil.which(self.settings.nginx)
        if binary is None:
            raise ConfigError("cache.file_server.nginx", f"{self.settings.nginx} not found: {INSTALL_HINT}")
        module = self.settings.njs_module
        if module and not Path(module).exists():
            raise ConfigError("cache.file_server.njs_module", f"{module} not found: {INSTALL_HINT}")
        self._stop_leftover()
        attempts = 1 if self.settings.listen else 3  # a free port can be taken between choosing and binding
        for attempt in range(attempts):
            if not self.settings.listen:
                self.port = _free_port(self.host)
            self._write_config()
            try:
                self._spawn(binary)
                return
            except ConfigError:
                if attempt == attempts - 1:
                    raise

    def _spawn(self, binary: str) -> None:
        error_log = self.state / "error.log"
        with open(error_log, "ab") as out:
            self.process = subprocess.Popen(
                [binary, "-e", str(error_log), "-p", str(self.state), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                # Its own process group: if the master dies hard, stop() still reaps its workers.
                preexec_fn=_die_with_parent, close_fds=True, start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(self.internal_address, timeout=0.5):
                    log.info("cache: file server (nginx, pid %d) on %s:%d", self.process.pid, self.host, self.port)
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        tail = error_log.read_text(errors="replace")[-800:].strip()
        raise ConfigError("cache.file_server", f"nginx did not start on {self.host}:{self.port}: {tail or 'no output'}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                self._stop_master(process)
        finally:
            # Workers outlive a master that was killed hard: end the whole group we started.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _stop_master(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGQUIT)  # graceful: lets transfers in progress finish, briefly
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _stop_leftover(self) -> None:
        """An nginx still running on our config (its mirror was killed without PDEATHSIG firing)."""
        try:
            pid = int((self.state / "nginx.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.config_path).encode() in cmdline:
            log.warning("cache: stopping a leftover file server (nginx pid %d) from a previous run", pid)
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)

    def _write_config(self) -> None:
        user = ""
        if os.geteuid() == 0:
            # nginx's workers would otherwise switch to `nobody`, who must not read the cache.
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
        listen = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        text = NGINX_CONF.format(
            load_module=f"load_module {self.settings.njs_module};\n" if self.settings.njs_module else "",
            user=user,
            state=self.state,
            listen=listen,
            root=self.root,
            key=self.key,
        )
        for path, content in ((self.state / "link.js", LINK_JS), (self.config_path, text)):
            temp = path.with_suffix(".tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(content)
            os.replace(temp, path)
