"""The authmirror demo: a real upstream registry, the mirror, and real pulls through it.

1. builds a small multi-layer image (no Docker needed) and pushes it to a real docker-registry
   with htpasswd auth on 127.0.0.1:5001 (the vendor's private registry),
2. starts `mitmdump -s addon/proxy.py --set authmirror_config=examples/authmirror.yaml`,
3. pulls through the mirror with skopeo using a demo license, as a customer would,
4. pulls again: the blobs come from the mirror's verified cache (examples/cache), not upstream,
5. shows what a customer with an expired license sees,
6. stops the vendor's registry and pulls once more: the cache carries on (stale_if_error),
7. prints the pull events, and stops everything it started.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import images, processes  # noqa: E402

EXAMPLE_CONFIG = REPO / "examples" / "authmirror.yaml"
VENDOR_USER, VENDOR_PASS = "vendor", "demo-vendor-password"
LICENSE = "demo-license-globex-2fX9kqP7"
EXPIRED_LICENSE = "demo-license-expired-5tY1wLx0"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    for program in ("docker-registry", "skopeo", "htpasswd"):
        processes.require_binary(program)
    if not (port_free(5000) and port_free(5001)):
        print("demo: ports 5000 and 5001 on 127.0.0.1 must be free (the example config uses them)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="authmirror-demo-"))
    shutil.rmtree(EXAMPLE_CONFIG.parent / "cache", ignore_errors=True)  # the demo starts cold
    pull_log = REPO / "examples" / "pulls.jsonl"
    log_start = pull_log.stat().st_size if pull_log.exists() else 0
    demo_start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    started: list = []
    try:
        step("building a demo image (3 layers) as an OCI layout")
        image = images.build_image(work / "oci", "1.0", [2_000_000, 500_000, 20_000], seed=7)
        print(f"    image digest {image.manifest_digest}")

        step("starting the vendor's private registry: docker-registry with htpasswd on 127.0.0.1:5001")
        registry = processes.start_registry(work / "registry", users={VENDOR_USER: VENDOR_PASS}, port=5001)
        started.append(registry)
        processes.push(image.layout, "1.0", registry, "vendor/app")
        print("    pushed 127.0.0.1:5001/vendor/app:1.0")

        step("starting the mirror: mitmdump -s addon/proxy.py --set authmirror_config=examples/authmirror.yaml")
        env = {"VENDOR_USER": VENDOR_USER, "VENDOR_PASS": VENDOR_PASS}
        mirror = processes.start_mirror(EXAMPLE_CONFIG.parent, EXAMPLE_CONFIG, 5000, env=env, state_dir=work)
        started.append(mirror)
        print("    listening on 127.0.0.1:5000")

        processes.clear_skopeo_cache()
        image_ref = "127.0.0.1:5000/proxy/acme/vendor/vendor/app:1.0"
        step(f"customer pull: skopeo copy docker://{image_ref} (license as password)")
        result = processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"customer:{LICENSE}", f"docker://{image_ref}", f"oci:{work / 'pulled'}:1.0", check=False)
        print(result.stdout.strip() or result.stderr.strip())
        if result.returncode != 0:
            return 1
        pulled = {p.name for p in (work / "pulled" / "blobs" / "sha256").iterdir()}
        ok = image.manifest_digest.split(":")[1] in pulled and all(l.digest.split(":")[1] in pulled for l in image.layers)
        print(f"    digests match the vendor's image: {ok}")

        step("the same pull again: blobs come from the mirror's cache, the upstream is only asked about the tag")
        fetched = registry.access_log().count("GET /v2/vendor/app/blobs/")
        processes.clear_skopeo_cache()
        result = processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"customer:{LICENSE}", f"docker://{image_ref}", f"oci:{work / 'pulled-again'}:1.0", check=False)
        print("    pulled" if result.returncode == 0 else result.stderr.strip())
        print(f"    blob GETs the upstream saw: {fetched} before, {registry.access_log().count('GET /v2/vendor/app/blobs/')} after")

        step("the same image on a custom domain (localhost -> app acme): localhost:5000/vendor/vendor/app:1.0")
        processes.clear_skopeo_cache()
        result = processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"customer:{LICENSE}", "docker://localhost:5000/vendor/vendor/app:1.0", f"oci:{work / 'pulled-domain'}:1.0", check=False)
        print("    pulled" if result.returncode == 0 else result.stderr.strip())

        step("a customer whose license expired sees why")
        result = processes.skopeo("inspect", "--tls-verify=false", "--creds", f"customer:{EXPIRED_LICENSE}", f"docker://{image_ref}", check=False)
        print("    " + result.stderr.strip().split("msg=")[-1])

        step("the vendor's registry goes down: the same pull still works from the cache")
        registry.stop()
        processes.clear_skopeo_cache()
        result = processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"customer:{LICENSE}", f"docker://{image_ref}", f"oci:{work / 'pulled-offline'}:1.0", check=False)
        print("    pulled (manifest served stale, blobs from the cache)" if result.returncode == 0 else result.stderr.strip())

        step("pull events (examples/pulls.jsonl): who pulled what, how many bytes, cache hit or miss, with what result")
        with open(pull_log) as f:
            f.seek(log_start)
            for line in f:
                e = json.loads(line)
                print(f"    {e['ts']} {e['customer'] or '-':12} {e['action']:8} {e['method']:4} {e['status']} {e['bytes']:>9} B  {e.get('cache') or '':5} {e['repository'] or ''} {(e['reference'] or '')[:19]} {e['error_code'] or ''}")

        step(f"usage report: authmirror report --since {demo_start}")
        report = subprocess.run([str(Path(sys.executable).parent / "authmirror"), "report", "-c", str(EXAMPLE_CONFIG), "--since", demo_start], capture_output=True, text=True)
        print("\n".join("    " + line for line in (report.stdout or report.stderr).splitlines()))
        return 0 if ok else 1
    finally:
        step("stopping everything the demo started")
        for process in reversed(started):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
