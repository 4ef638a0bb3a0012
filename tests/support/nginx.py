"""nginx as a local load balancer in front of mirror replicas: config generated into a temp dir,
bound to 127.0.0.1, started and stopped by PID (its master process)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .processes import Process, free_port, require_binary, start, wait_for_http

# Blobs stream through (no buffering to temp files), keep-alive to the replicas, long downloads
# spread by open connections.
CONFIG = """\
{user}worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/client_body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
{servers}
}}
"""
SERVER = """\
  upstream {name} {{
    least_conn;
{members}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://{name};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
"""


@dataclass
class LoadBalancer:
    """One nginx; `ports[name]` is where the balancer `name` listens."""

    ports: dict[str, int]
    process: Process

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stop(self) -> None:
        self.process.stop()


def start_nginx(workdir: Path, balancers: dict[str, list[int]]) -> LoadBalancer:
    """nginx with one listener per balancer, each spreading over the given backend ports."""
    binary = require_binary("nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in balancers}
    servers = "".join(
        SERVER.format(name=name, port=ports[name], members="\n".join(f"    server 127.0.0.1:{p};" for p in backends))
        for name, backends in balancers.items()
    )
    # As root, workers would switch to an unprivileged user that cannot use our temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = workdir / "nginx.conf"
    config.write_text(CONFIG.format(user=user, workdir=workdir, servers=servers))
    process = start([binary, "-c", str(config), "-p", str(workdir), "-e", str(workdir / "error.log")], workdir / "nginx.log")
    try:
        for name in balancers:
            wait_for_http(f"http://127.0.0.1:{ports[name]}/healthz", timeout=20)
    except RuntimeError:
        process.stop()
        raise RuntimeError(f"nginx did not start: {(workdir / 'error.log').read_text(errors='replace')[-2000:]}")
    return LoadBalancer(ports, process)
