"""Benchmark of the verified blob cache, beside direct pulls, bare mitmproxy, the mirror without a
cache and Distribution's pull-through cache (docker-registry with `proxy.remoteurl`).

    .venv/bin/python scripts/bench_cache.py [--reps 5] [--layer-mib 64] [--blob-mib 512] [--json out.json]

Everything runs on 127.0.0.1 in one run, on one upstream docker-registry (htpasswd, as a vendor's
private registry) and generated images; variants are interleaved and repeated, and the report
gives min/median/max with ratios against baselines measured in the same run (the machine may be
shared: absolute figures drift, ratios hold better). It measures:

  * skopeo pull of an image of --layers x --layer-mib (wall time), cold and warm;
  * one --blob-mib blob with curl (MB/s), warm;
  * 10 concurrent cold skopeo pulls of the image (wall time, and blob GETs the upstream served).

Cold variants get a fresh cache (a new mirror / registry process on an empty directory) before
each timed run; warm variants are filled once before the first. The functions are small and
independent (measure, start a variant, report rows) so they can be folded into scripts/bench.py.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import images, processes  # noqa: E402

VENDOR = ("vendor", "bench-vendor-Pa55")
LICENSE = "bench-license-0123456789"
REPOSITORY = "vendor/app"
TAG = "1.0"
QUIET_MITM = ["--set", "flow_detail=0"]  # no per-flow printing: it costs CPU the variants would not share


# -- inputs -----------------------------------------------------------------------------------


@dataclass
class Inputs:
    image: images.BuiltImage
    blob_digest: str
    blob_size: int


def build_inputs(work: Path, layers: int, layer_mib: int, blob_mib: int) -> tuple[Inputs, Path]:
    image = images.build_image(work / "oci", TAG, [layer_mib << 20] * layers, seed=8)
    blob = work / "big.bin"
    sha = hashlib.sha256()
    with open(blob, "wb") as f:
        chunk = os.urandom(1 << 20)
        for i in range(blob_mib):
            piece = chunk[:-4] + i.to_bytes(4, "big")
            sha.update(piece)
            f.write(piece)
    return Inputs(image, f"sha256:{sha.hexdigest()}", blob_mib << 20), blob


def push_blob(registry: processes.Registry, repository: str, path: Path, digest: str) -> None:
    auth = processes_basic(*VENDOR)
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=300)
    conn.request("POST", f"/v2/{repository}/blobs/uploads/", headers=auth)
    answer = conn.getresponse()
    answer.read()
    location = answer.headers["Location"].split(registry.host, 1)[-1]
    with open(path, "rb") as f:
        conn.request("PUT", f"{location}&digest={digest}", body=f, headers={**auth, "Content-Length": str(path.stat().st_size), "Content-Type": "application/octet-stream"})
        answer = conn.getresponse()
        answer.read()
    conn.close()
    if answer.status != 201:
        raise RuntimeError(f"blob upload failed: {answer.status}")


def processes_basic(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- variants ---------------------------------------------------------------------------------


@dataclass
class Variant:
    """One way of pulling. `fresh` variants get a new, empty instance before every timed run."""

    name: str
    start: Callable[[], object]  # -> a started service with .host and .stop()
    creds: str
    path_prefix: str = ""  # image path on the service, before REPOSITORY
    fresh: bool = False
    follow_redirects: bool = False
    service: object = None
    started: list = field(default_factory=list)

    def ensure(self, new: bool = False) -> None:
        if new and self.service is not None:
            self.stop()
        if self.service is None:
            self.service = self.start()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    @property
    def image(self) -> str:
        return f"{self.service.host}/{self.path_prefix}{REPOSITORY}:{TAG}"

    def blob_url(self, digest: str) -> str:
        return f"http://{self.service.host}/v2/{self.path_prefix}{REPOSITORY}/blobs/{digest}"


def start_upstream(work: Path) -> processes.Registry:
    return processes.start_registry(work / "upstream", users={VENDOR[0]: VENDOR[1]})


def start_bare_mitmproxy(work: Path, upstream: processes.Registry):
    port = processes.free_port()
    state = work / f"bare-{port}"
    state.mkdir(parents=True)
    args = [processes.mitmdump_binary(), "--mode", f"reverse:{upstream.url}@127.0.0.1:{port}", "--set", "stream_large_bodies=1m", "--set", f"confdir={state}", "--set", "termlog_verbosity=warn", *QUIET_MITM]
    process = processes.start(args, state / "mitmdump.log")
    processes.wait_for_http(f"http://127.0.0.1:{port}/v2/", timeout=30)
    return processes.LocalService(port, state, process)


def start_authmirror(work: Path, upstream: processes.Registry, name: str, cache: dict | None):
    port = processes.free_port()
    directory = work / f"{name}-{port}"
    apps = {"acme": {"registries": [{"name": "vendor", "type": "basic", "url": upstream.url, "username": VENDOR[0], "password": "env:BENCH_VENDOR_PASS"}]}}
    overrides = {"pull_log": "pulls.jsonl"}
    if cache is not None:
        overrides["cache"] = {"dir": "cache", "max_size": "20GiB", **cache}
    config = processes.write_mirror_config(directory, port, apps, [{"id": LICENSE, "customer": "Bench", "apps": ["acme"]}], **overrides)
    mirror = processes.start_mirror(directory, config, port, env={"BENCH_VENDOR_PASS": VENDOR[1]}, extra_args=QUIET_MITM, termlog="warn")
    return Cleanup(mirror, directory)


def start_distribution_cache(work: Path, upstream: processes.Registry, name: str):
    """Distribution's pull-through cache. NOTE: with a Basic-auth upstream, Distribution 2.8 uses
    proxy.username/password only for token auth; the credentials must be in the remote URL."""
    port = processes.free_port()
    directory = work / f"{name}-{port}"
    proxy = {"proxy": {"remoteurl": f"http://{VENDOR[0]}:{VENDOR[1]}@{upstream.host}"}}
    registry = processes.start_registry(directory, users={}, port=port, extra=proxy)
    return Cleanup(registry, directory)


@dataclass
class Cleanup:
    """A started service whose working directory goes when it stops (cold variants pile up otherwise)."""

    service: object
    directory: Path

    @property
    def host(self) -> str:
        return self.service.host

    def stop(self) -> None:
        self.service.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def make_variants(work: Path, upstream: processes.Registry) -> dict[str, Variant]:
    license_creds = f"customer:{LICENSE}"
    vendor_creds = f"{VENDOR[0]}:{VENDOR[1]}"
    mirror_path = "proxy/acme/vendor/"
    return {
        "direct": Variant("direct", lambda: upstream_handle(upstream), vendor_creds),
        "bare mitmproxy": Variant("bare mitmproxy", lambda: start_bare_mitmproxy(work, upstream), vendor_creds),
        "authmirror, no cache": Variant("authmirror, no cache", lambda: start_authmirror(work, upstream, "nocache", None), license_creds, mirror_path),
        "authmirror cache, cold": Variant("authmirror cache, cold", lambda: start_authmirror(work, upstream, "cold", {"serve": "redirect"}), license_creds, mirror_path, fresh=True),
        "authmirror cache, warm proxy": Variant("authmirror cache, warm proxy", lambda: start_authmirror(work, upstream, "proxy", {"serve": "proxy"}), license_creds, mirror_path),
        "authmirror cache, warm redirect": Variant("authmirror cache, warm redirect", lambda: start_authmirror(work, upstream, "redirect", {"serve": "redirect"}), license_creds, mirror_path, follow_redirects=True),
        "Distribution cache, cold": Variant("Distribution cache, cold", lambda: start_distribution_cache(work, upstream, "dist-cold"), "", fresh=True),
        "Distribution cache, warm": Variant("Distribution cache, warm", lambda: start_distribution_cache(work, upstream, "dist-warm"), ""),
    }


@dataclass
class upstream_handle:  # noqa: N801 - a view of the upstream as a variant's service; stopping it is not ours
    registry: processes.Registry

    @property
    def host(self) -> str:
        return self.registry.host

    def stop(self) -> None:
        pass


# -- measuring --------------------------------------------------------------------------------


def skopeo_pull(variant: Variant, dest: Path) -> float:
    processes.clear_skopeo_cache()
    args = ["copy", "--quiet", "--src-tls-verify=false"]
    if variant.creds:
        args += ["--src-creds", variant.creds]
    started = time.perf_counter()
    result = processes.skopeo(*args, f"docker://{variant.image}", f"oci:{dest}:{TAG}", check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{variant.name}: skopeo pull failed: {result.stderr.strip()[-500:]}")
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


def curl_blob(variant: Variant, digest: str, size: int) -> float:
    """MB/s of one blob GET (following the cache's 307 where the variant redirects)."""
    user, _, password = variant.creds.partition(":")
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}"]
    if variant.creds:
        args += ["-u", f"{user}:{password}"]
    if variant.follow_redirects:
        args.append("-L")
    out = subprocess.run([*args, variant.blob_url(digest)], capture_output=True, text=True, check=True, timeout=600).stdout.split()
    status, received, seconds = int(out[0]), int(out[1]), float(out[2])
    if status != 200 or received != size:
        raise RuntimeError(f"{variant.name}: blob GET answered {status} with {received} of {size} bytes")
    return size / seconds / 1e6


def measure(variants: list[Variant], run: Callable[[Variant], float], reps: int, warm: Callable[[Variant], object] | None = None) -> dict[str, list[float]]:
    """Interleaved: rep 1 of every variant, then rep 2, ... Fresh variants restart before each rep."""
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    for variant in variants:
        variant.ensure()
        if warm is not None and not variant.fresh:
            warm(variant)
    for rep in range(reps):
        for variant in variants:
            if variant.fresh and rep > 0:
                variant.ensure(new=True)
            samples[variant.name].append(run(variant))
            print(f"  rep {rep + 1}/{reps} {variant.name:34} {samples[variant.name][-1]:9.3f}", file=sys.stderr, flush=True)
    return samples


def concurrent_cold_pulls(variant: Variant, upstream: processes.Registry, inputs: Inputs, work: Path, clients: int) -> tuple[float, int]:
    """Wall time of `clients` simultaneous cold pulls, and the layer GETs the upstream served."""
    variant.ensure(new=True)
    before = sum(upstream.access_log().count(f'"GET /v2/{REPOSITORY}/blobs/{layer.digest} ') for layer in inputs.image.layers)
    processes.clear_skopeo_cache()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: skopeo_pull(variant, work / f"concurrent-{i}"), range(clients)))
    elapsed = time.perf_counter() - started
    after = sum(upstream.access_log().count(f'"GET /v2/{REPOSITORY}/blobs/{layer.digest} ') for layer in inputs.image.layers)
    return elapsed, after - before


# -- reporting --------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def report_rows(samples: dict[str, list[float]], baselines: dict[str, str], unit: str) -> list[dict]:
    """One row per variant: min/median/max and median ratios against each named baseline."""
    rows = []
    for name, values in samples.items():
        row = {"variant": name, "unit": unit, **summary(values)}
        for label, baseline in baselines.items():
            if baseline in samples:
                row[f"vs {label}"] = row["median"] / statistics.median(samples[baseline])
        rows.append(row)
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    """A Markdown table: it pastes into docs/ as it is."""
    ratio_keys = [k for k in rows[0] if k.startswith("vs ")]
    columns = ["variant", "min", "median", "max", *ratio_keys]
    number = "{:.0f}" if rows[0]["unit"] == "MB/s" else "{:.3f}"
    cells = [[row["variant"], *(number.format(row[k]) for k in ("min", "median", "max")), *(f"{row[k]:.2f}x" if k in row else "" for k in ratio_keys)] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    print(f"\n{title} [{rows[0]['unit']}]")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in cells:
        print("| " + " | ".join(line[0].ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line)) + " |")


def machine_facts() -> dict:
    return {
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "skopeo": subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.strip(),
    }


def goals(pull: dict[str, dict], blob: dict[str, dict]) -> list[tuple[str, bool, str]]:
    cold = pull["authmirror cache, cold"]["median"] / pull["Distribution cache, cold"]["median"]
    redirect = blob["authmirror cache, warm redirect"]["median"] / blob["direct"]["median"]
    warm = pull["authmirror cache, warm redirect"]["median"] / pull["Distribution cache, warm"]["median"]
    warm_proxy = pull["authmirror cache, warm proxy"]["median"] / pull["Distribution cache, warm"]["median"]
    return [
        ("cold pull <= Distribution cold", cold <= 1.0, f"{cold:.2f}x"),
        ("warm redirect blob throughput >= 0.9x direct", redirect >= 0.9, f"{redirect:.2f}x"),
        ("warm skopeo pull (redirect) <= 1.05x Distribution warm", warm <= 1.05, f"{warm:.2f}x (proxy: {warm_proxy:.2f}x)"),
    ]


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--layer-mib", type=int, default=64)
    parser.add_argument("--blob-mib", type=int, default=512)
    parser.add_argument("--clients", type=int, default=10, help="concurrent cold pulls")
    parser.add_argument("--concurrent-reps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for program in ("docker-registry", "skopeo", "htpasswd", "nginx", "curl"):
        processes.require_binary(program)

    work = Path(tempfile.mkdtemp(prefix="authmirror-bench-cache-"))
    variants: dict[str, Variant] = {}
    upstream = None
    try:
        print(f"building inputs in {work}: {args.layers} x {args.layer_mib} MiB image, {args.blob_mib} MiB blob", file=sys.stderr)
        inputs, blob_file = build_inputs(work, args.layers, args.layer_mib, args.blob_mib)
        upstream = start_upstream(work)
        processes.push(inputs.image.layout, TAG, upstream, REPOSITORY)
        push_blob(upstream, REPOSITORY, blob_file, inputs.blob_digest)
        blob_file.unlink()
        variants = make_variants(work, upstream)

        print("skopeo pulls", file=sys.stderr)
        pull_samples = measure(list(variants.values()), lambda v: skopeo_pull(v, work / "pulled"), args.reps, warm=lambda v: skopeo_pull(v, work / "pulled"))
        pull_rows = report_rows(pull_samples, {"direct": "direct", "Distribution cold": "Distribution cache, cold", "Distribution warm": "Distribution cache, warm"}, "s")

        print("blob GETs", file=sys.stderr)
        blob_variants = [variants[n] for n in ("direct", "bare mitmproxy", "authmirror, no cache", "authmirror cache, warm proxy", "authmirror cache, warm redirect", "Distribution cache, warm")]
        blob_run = lambda v: curl_blob(v, inputs.blob_digest, inputs.blob_size)  # noqa: E731
        blob_samples = measure(blob_variants, blob_run, args.reps, warm=blob_run)
        blob_rows = report_rows(blob_samples, {"direct": "direct", "Distribution warm": "Distribution cache, warm"}, "MB/s")

        print("concurrent cold pulls", file=sys.stderr)
        concurrent: dict[str, list[float]] = {}
        upstream_gets: dict[str, list[int]] = {}
        for _ in range(args.concurrent_reps):
            for name in ("authmirror cache, cold", "authmirror, no cache", "Distribution cache, cold"):
                variant = variants[name]
                variant.fresh = True
                seconds, gets = concurrent_cold_pulls(variant, upstream, inputs, work, args.clients)
                concurrent.setdefault(name, []).append(seconds)
                upstream_gets.setdefault(name, []).append(gets)
                print(f"  {name:34} {seconds:8.3f} s, {gets} layer GETs upstream", file=sys.stderr, flush=True)
        concurrent_rows = report_rows(concurrent, {"Distribution cold": "Distribution cache, cold"}, "s")
        for row in concurrent_rows:
            row["upstream layer GETs"] = upstream_gets[row["variant"]]

        print(f"\nmachine: {json.dumps(machine_facts())}")
        print_table(f"skopeo pull, {args.layers} x {args.layer_mib} MiB image, {args.reps} reps", pull_rows)
        print_table(f"one {args.blob_mib} MiB blob with curl, warm, {args.reps} reps", blob_rows)
        print_table(f"{args.clients} concurrent cold skopeo pulls, {args.concurrent_reps} reps", concurrent_rows)
        for row in concurrent_rows:
            print(f"  {row['variant']}: layer GETs the upstream served per run: {row['upstream layer GETs']} ({args.layers} layers)")
        by_name = {r["variant"]: r for r in pull_rows}
        blob_by_name = {r["variant"]: r for r in blob_rows}
        print("\ngoals:")
        results = goals(by_name, blob_by_name)
        for text, met, figure in results:
            print(f"  [{'met' if met else 'NOT met'}] {text}: {figure}")
        if args.json:
            args.json.write_text(json.dumps({"machine": machine_facts(), "args": vars(args) | {"json": str(args.json)}, "pull": pull_rows, "blob": blob_rows, "concurrent": concurrent_rows, "goals": results}, indent=2))
        return 0
    finally:
        for variant in variants.values():
            variant.stop()
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
