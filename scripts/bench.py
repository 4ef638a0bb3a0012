#!/usr/bin/env python3
"""Benchmark authmirror against direct access, a bare mitmproxy and Distribution's pull-through
cache, in one run, as ratios.

    .venv/bin/python scripts/bench.py                # full run (~10 minutes), writes docs/benchmarks.md
    .venv/bin/python scripts/bench.py --quick        # smoke run: tiny sizes, one repeat, writes nothing
    .venv/bin/python scripts/bench.py --only cache   # the blob cache's sections only (cache-pull, -blob, -burst)

Everything runs on 127.0.0.1 and is started (and stopped, by PID) by this script: a docker-registry
on local disk, a docker-registry whose S3 driver on moto's server redirects blob GETs to storage,
a bare `mitmdump --mode reverse` with streaming, authmirror (`blob_redirects: follow`, and `pass`
in front of the S3 registry), nginx balancing over one or two authmirror replicas, authmirror with
its blob cache (`serve: proxy` and `serve: redirect`), and Distribution's pull-through cache
(`docker-registry` with `proxy.remoteurl`).
Variants are interleaved (their order rotates every repeat) so a busy neighbour hurts all alike;
the report gives min/median/max per variant and the ratios the goals are about. Warm cache
variants are filled once before their first measurement; a cold measurement pulls an image nobody
has pulled before (one per repeat), through caches that keep running, as in production.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from authmirror.tokens import load_signing_key  # noqa: E402
from tests.support import images, loadgen, nginx, processes  # noqa: E402
from tests.support.http import basic, request  # noqa: E402

import bench_results  # noqa: E402

MiB = loadgen.MiB
LICENSE = "bench-license-globex-4Hs8kQ2v"
REPOSITORY = "bench/app"
TAG = "pull"
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Sizes:
    image_layers: tuple[int, ...]  # the skopeo pull (and every cold image of the cache sections)
    blob: int  # one blob: throughput and peak RSS
    huge_blob: int  # one huge blob: peak RSS only has to stay flat
    parallel_blob: int
    parallel_count: int
    heads: int
    token_seconds: int
    token_connections: int
    repeats: int
    huge_repeats: int
    burst_clients: int  # concurrent cold skopeo pulls (cache-burst)
    burst_repeats: int


FULL = Sizes((64 * MiB,) * 3, 512 * MiB, 2048 * MiB, 64 * MiB, 20, 500, 2, 8, 5, 2, 10, 3)
QUICK = Sizes((2 * MiB,) * 3, 16 * MiB, 48 * MiB, 4 * MiB, 4, 50, 1, 4, 1, 1, 3, 1)
TEST_NAMES = ("pull", "blob", "huge", "heads", "parallel", "tokens", "cache-pull", "cache-blob", "cache-burst")
CACHE_TESTS = ("cache-pull", "cache-blob", "cache-burst")
# Which generated blob each test reads (the others need only the image).
BLOBS_FOR = {"blob": ("blob", "cache-blob"), "huge": ("huge",), "parallel": ("parallel",)}


@dataclass
class Variant:
    """One way of reaching the same images: its URL, image path, credentials and proxy processes."""

    name: str
    url: str
    repository: str  # the repository path as this variant's clients name it
    license: str | None = None  # authmirror variants: pull with this license
    pids: tuple[int, ...] = ()  # proxy processes whose memory we watch
    warm: bool = False  # a cache: filled by one untimed run before its first measurement in a test
    cold: bool = False  # a cache: each measurement pulls an image it has never seen

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def headers(self) -> dict[str, str]:
        """What a client sends: a fresh bearer token from the mirror, or nothing."""
        if self.license is None:
            return {}
        scope = f"repository:{self.repository}:pull"
        answer = request("GET", f"{self.url}/v2/token?service=authmirror&scope={scope}", basic(self.license))
        if answer.status != 200:
            raise RuntimeError(f"{self.name}: token request answered {answer.status}: {answer.body[:300]!r}")
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    def blob_url(self, digest: str) -> str:
        return f"{self.url}/v2/{self.repository}/blobs/{digest}"


@dataclass
class ColdImages:
    """Images nobody has pulled yet, per test: each measurement of a variant takes the next one,
    so in repeat N every variant of a test pulls the same never-seen image N."""

    images: dict[str, list[images.BuiltImage]] = field(default_factory=dict)
    taken: dict[tuple[str, str], int] = field(default_factory=dict)

    def take(self, test: str, variant: str) -> images.BuiltImage:
        index = self.taken.get((test, variant), 0)
        self.taken[(test, variant)] = index + 1
        available = self.images.get(test, [])
        if index >= len(available):
            raise RuntimeError(f"{test}: no cold image left for {variant} (built {len(available)})")
        return available[index]


class Testbed:
    """Starts everything the benchmark talks to and stops it again (only what it started)."""

    def __init__(self, workdir: Path, sizes: Sizes, tests: set[str] | None = None):
        self.workdir = workdir
        self.sizes = sizes
        self.tests = tests or set(TEST_NAMES)  # what will run: only their inputs are built
        self.started: list = []
        self.variants: dict[str, Variant] = {}
        self.digests: dict[str, str] = {}
        self.cold = ColdImages()
        self.upstream: processes.Registry | None = None  # the local-disk registry every cache reads

    def stop(self) -> None:
        """Stop everything side by side (each waits for its process to exit)."""

        def stop_one(thing) -> None:
            try:
                thing.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                print(f"bench: could not stop {thing}: {e}", file=sys.stderr)

        if self.started:
            with ThreadPoolExecutor(len(self.started)) as pool:
                list(pool.map(stop_one, reversed(self.started)))
        self.started.clear()

    def _keep(self, thing):
        self.started.append(thing)
        return thing

    def start(self) -> None:
        image, blob_files = self._make_images()
        fs, s3 = self._start_upstreams()
        self.upstream = fs
        say("pushing the image and blobs upstream")
        for registry in (fs, s3):
            processes.push(image.layout, TAG, registry, REPOSITORY)
        for name, path in blob_files.items():
            for registry in (fs, s3) if name == "blob" else (fs,):
                loadgen.upload_blob(registry.url, REPOSITORY, path, self.digests[name])
            path.unlink()
        shutil.rmtree(image.layout)
        self._push_cold_images(fs)
        self._start_proxies(fs, s3)

    def _make_images(self) -> tuple[images.BuiltImage, dict[str, Path]]:
        say("building the test image and blobs")
        sizes = self.sizes
        image = images.build_image(self.workdir / "oci", TAG, list(sizes.image_layers), seed=61)
        blob_files = {}
        for name, size, seed in (("blob", sizes.blob, 62), ("huge", sizes.huge_blob, 63), ("parallel", sizes.parallel_blob, 64)):
            if not self.tests & set(BLOBS_FOR[name]):
                continue
            blob_files[name] = self.workdir / f"{name}.bin"
            self.digests[name] = loadgen.write_blob_file(blob_files[name], size, seed)
        return image, blob_files

    def _push_cold_images(self, fs: processes.Registry) -> None:
        """One never-pulled image per repeat of each cold section, same sizes as the main image."""
        wanted = {"cache-pull": self.sizes.repeats, "cache-burst": self.sizes.burst_repeats}
        wanted = {test: count for test, count in wanted.items() if test in self.tests}
        if not wanted:
            return
        say(f"building and pushing {sum(wanted.values())} cold image(s) for the cache sections")
        layout = self.workdir / "oci-cold"
        seed = 100
        for test, count in wanted.items():
            for index in range(count):
                seed += 1
                tag = f"{test}-{index + 1}"
                built = images.build_image(layout, tag, list(self.sizes.image_layers), seed=seed)
                processes.push(layout, tag, fs, REPOSITORY)
                self.cold.images.setdefault(test, []).append(built)
                shutil.rmtree(layout / "blobs")  # pushed: only the next image's files are needed
        shutil.rmtree(layout)

    def _start_upstreams(self) -> tuple[processes.Registry, processes.Registry]:
        """docker-registry on local disk, and one whose S3 driver (on moto) redirects blob GETs."""
        say("starting the upstream registries (local disk, and S3 on moto with storage redirects)")
        fs = self._keep(processes.start_registry(self.workdir / "registry-fs", users={}))
        s3_port = processes.free_port()
        moto = self._keep(processes.start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)], self.workdir / "moto.log", cwd=self.workdir))
        processes.wait_for_http(f"http://127.0.0.1:{s3_port}/", timeout=30)
        bucket = request("PUT", f"http://127.0.0.1:{s3_port}/registry")
        if bucket.status != 200:
            raise RuntimeError(f"moto did not create the bucket: {bucket.status} {moto.log()[-500:]}")
        storage = {
            "s3": {"accesskey": "bench", "secretkey": "bench", "region": "us-east-1", "regionendpoint": f"http://127.0.0.1:{s3_port}", "bucket": "registry", "secure": False, "v4auth": True, "rootdirectory": "/reg"},
            "redirect": {"disable": False},
        }
        s3 = self._keep(processes.start_registry(self.workdir / "registry-s3", users={}, storage=storage))
        return fs, s3

    def _start_proxies(self, fs: processes.Registry, s3: processes.Registry) -> None:
        say("starting bare mitmproxy, authmirror (follow, follow S3, pass S3, two replicas, cache proxy, cache redirect), nginx and Distribution's cache")
        apps = {
            "bench": {
                "registries": [
                    {"name": "fs", "type": "anonymous", "url": fs.url},
                    {"name": "s3", "type": "anonymous", "url": s3.url, "redirect_hosts": ["127.0.0.1"]},
                ]
            }
        }
        # One process per variant (nginx's two replicas excepted), so no proxy works, and is
        # scheduled, more than the bare mitmproxy it is compared with. Started side by side; the
        # signing key they share is made first, so they cannot race to create it.
        shared = self.workdir / "mirror-shared"
        shared.mkdir()
        load_signing_key(f"file:{shared / 'token.pem'}")
        cache = {"dir": "cache", "max_size": "50GiB"}
        starts: dict[str, Callable[[], object]] = {
            "bare": lambda: self._start_bare_mitmproxy(fs.url),
            "follow": lambda: self._start_mirror(shared, "mirror", apps, blob_redirects="follow"),
            "follow_s3": lambda: self._start_mirror(shared, "mirror-follow-s3", apps, blob_redirects="follow"),
            "passing": lambda: self._start_mirror(shared, "mirror-pass-s3", apps, blob_redirects="pass"),
            "first": lambda: self._start_mirror(shared, "replica-1", apps, blob_redirects="follow"),
            "second": lambda: self._start_mirror(shared, "replica-2", apps, blob_redirects="follow"),
            "cache_proxy": lambda: self._start_mirror(shared, "mirror-cache-proxy", apps, blob_redirects="follow", cache={**cache, "serve": "proxy"}),
            "cache_redirect": lambda: self._start_mirror(shared, "mirror-cache-redirect", apps, blob_redirects="follow", cache={**cache, "serve": "redirect"}),
            "distribution": lambda: self._keep(processes.start_registry(self.workdir / "distribution-cache", users={}, extra={"proxy": {"remoteurl": fs.url}})),
        }
        pool = ThreadPoolExecutor(len(starts))
        try:
            futures = {name: pool.submit(start) for name, start in starts.items()}
            started = {name: future.result() for name, future in futures.items()}  # raises the first failure
        finally:
            # Even when interrupted: every start under way lands in self.started before stop() runs.
            pool.shutdown(wait=True)
        bare, follow, follow_s3, passing, first, second = (started[n] for n in ("bare", "follow", "follow_s3", "passing", "first", "second"))
        cache_proxy, cache_redirect, distribution = started["cache_proxy"], started["cache_redirect"], started["distribution"]
        balancer = self._keep(nginx.start_nginx(self.workdir / "nginx", {"one": [first.port], "two": [first.port, second.port]}))

        mirror_repo = f"proxy/bench/fs/{REPOSITORY}"
        s3_repo = f"proxy/bench/s3/{REPOSITORY}"
        pid = lambda p: p.process.popen.pid  # noqa: E731
        for variant in (
            Variant("direct", fs.url, REPOSITORY),
            Variant("mitmproxy", bare.url, REPOSITORY, pids=(pid(bare),)),
            Variant("authmirror", follow.url, mirror_repo, LICENSE, (pid(follow),)),
            Variant("direct S3", s3.url, REPOSITORY),
            Variant("authmirror pass S3", passing.url, s3_repo, LICENSE, (pid(passing),)),
            Variant("authmirror follow S3", follow_s3.url, s3_repo, LICENSE, (pid(follow_s3),)),
            Variant("nginx + 1 replica", balancer.url("one"), mirror_repo, LICENSE, (pid(first),)),
            Variant("nginx + 2 replicas", balancer.url("two"), mirror_repo, LICENSE, (pid(first), pid(second))),
            # The cold variants are the warm ones' processes, pulling images they have never seen.
            Variant("authmirror cache cold", cache_redirect.url, mirror_repo, LICENSE, (pid(cache_redirect),), cold=True),
            Variant("authmirror cache warm proxy", cache_proxy.url, mirror_repo, LICENSE, (pid(cache_proxy),), warm=True),
            Variant("authmirror cache warm redirect", cache_redirect.url, mirror_repo, LICENSE, (pid(cache_redirect),), warm=True),
            Variant("Distribution cache cold", distribution.url, REPOSITORY, cold=True),
            Variant("Distribution cache warm", distribution.url, REPOSITORY, warm=True),
        ):
            self.variants[variant.name] = variant

    def _start_bare_mitmproxy(self, upstream_url: str) -> processes.MirrorProcess:
        port = processes.free_port()
        state = self.workdir / "mitmproxy-bare"
        state.mkdir()
        args = [
            processes.mitmdump_binary(),
            "--mode", f"reverse:{upstream_url}@127.0.0.1:{port}",
            "-s", str(Path(__file__).with_name("bench_plain_http.py")),
            "--set", "stream_large_bodies=1",
            "--set", f"confdir={state / 'conf'}",
            "--set", "termlog_verbosity=info",
        ]
        process = self._keep(processes.start(args, state / "mitmdump.log", cwd=state))
        processes.wait_for_http(f"http://127.0.0.1:{port}/v2/", timeout=30)
        return processes.MirrorProcess(port=port, workdir=state, config_path=state, process=process)

    def _start_mirror(self, shared: Path, name: str, apps: dict, **overrides) -> processes.MirrorProcess:
        """A replica: its own port, config copy and pull log; the signing key file is shared."""
        port = processes.free_port()
        workdir = self.workdir / name
        token = {"signing_key": f"file:{shared / 'token.pem'}", "ttl_seconds": 3600}
        licenses = [{"id": LICENSE, "customer": "Globex Corp", "apps": ["bench"]}]
        config = processes.write_mirror_config(workdir, port, apps, licenses, token=token, **overrides)
        # The same log level as the bare mitmproxy (the tests' default, debug, costs a little).
        return self._keep(processes.start_mirror(workdir, config, port, termlog="info"))


# -- measurements -----------------------------------------------------------------------------

Results = dict  # (test, variant) -> {metric: [values...], "repeat": [repeat index of each value]}


def record(results: Results, test: str, variant: str, repeat: int, metrics: dict[str, float]) -> None:
    slot = results.setdefault((test, variant), {"repeat": []})
    slot["repeat"].append(repeat)
    for name, value in metrics.items():
        slot.setdefault(name, []).append(value)


def reset_memory(variant: Variant) -> None:
    for pid in variant.pids:
        loadgen.reset_peak_rss(pid)


def peak_memory(variant: Variant) -> float:
    return max((loadgen.peak_rss_mib(pid) for pid in variant.pids), default=float("nan"))


def skopeo_pull(variant: Variant, destination: Path, tag: str) -> None:
    shutil.rmtree(destination, ignore_errors=True)
    creds = ["--src-creds", f"customer:{variant.license}"] if variant.license else ["--src-no-creds"]
    try:
        processes.skopeo("copy", "--quiet", "--src-tls-verify=false", *creds, f"docker://{variant.host}/{variant.repository}:{tag}", f"dir:{destination}")
    finally:
        shutil.rmtree(destination, ignore_errors=True)


def measure_pull(variant: Variant, workdir: Path, tag: str = TAG) -> dict[str, float]:
    processes.clear_skopeo_cache()
    reset_memory(variant)
    started = time.perf_counter()
    skopeo_pull(variant, workdir / "pulled", tag)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_mib": peak_memory(variant)}


def measure_burst(variant: Variant, workdir: Path, upstream: processes.Registry, image: images.BuiltImage, clients: int) -> dict[str, float]:
    """`clients` simultaneous skopeo pulls of an image nobody has pulled: wall time, and how many
    layer GETs the upstream served (a cache that fetches each blob once: one per layer)."""
    before = upstream_layer_gets(upstream, image, settle=False)  # nothing of this image in flight
    processes.clear_skopeo_cache()
    reset_memory(variant)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: skopeo_pull(variant, workdir / f"burst-{i}", image.tag), range(clients)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "upstream_gets": upstream_layer_gets(upstream, image) - before, "rss_mib": peak_memory(variant)}


def upstream_layer_gets(registry: processes.Registry, image: images.BuiltImage, settle: bool = True) -> int:
    """Layer GETs in the registry's access log, read once it has been quiet for 100 ms (it logs a
    request after answering it, which may be just after our client finished)."""
    deadline, quiet, size = time.time() + 3, 0, -1
    while settle and quiet < 2 and time.time() < deadline:
        time.sleep(0.05)
        current = registry.process.log_path.stat().st_size
        quiet, size = (quiet + 1, size) if current == size else (0, current)
    log = registry.access_log()
    return sum(log.count(f'"GET /v2/{REPOSITORY}/blobs/{layer.digest} ') for layer in image.layers)


def measure_blob(variant: Variant, digest: str, size: int) -> dict[str, float]:
    headers = variant.headers()
    reset_memory(variant)
    transfer = loadgen.curl_fetch(variant.blob_url(digest), headers)
    if transfer.status != 200 or transfer.size != size:
        raise RuntimeError(f"{variant.name}: blob GET gave {transfer.status} with {transfer.size} of {size} bytes")
    return {"mb_s": size / transfer.seconds / 1e6, "rss_mib": peak_memory(variant)}


def measure_heads(variants: list[Variant], count: int) -> dict[str, dict[str, float]]:
    """All variants at once, request by request in turns: latency is compared in the same moments."""
    targets = [(f"{v.url}/v2/{v.repository}/manifests/{TAG}", {**v.headers(), "Accept": MANIFEST_ACCEPT}) for v in variants]
    timings = loadgen.head_latencies(targets, count)
    return {v.name: {"p50_ms": loadgen.percentile(t, 0.5), "p99_ms": loadgen.percentile(t, 0.99)} for v, t in zip(variants, timings)}


def measure_parallel(variant: Variant, digest: str, size: int, count: int) -> dict[str, float]:
    headers = variant.headers()
    reset_memory(variant)
    transfers, wall = loadgen.curl_parallel(variant.blob_url(digest), count, headers)
    bad = [t for t in transfers if t.status != 200 or t.size != size]
    if bad or len(transfers) != count:
        raise RuntimeError(f"{variant.name}: {len(bad)} of {count} parallel GETs failed ({bad[:1]})")
    return {"mb_s": count * size / wall / 1e6, "rss_mib": peak_memory(variant)}


def measure_tokens(variant: Variant, seconds: float, connections: int) -> dict[str, float]:
    scope = f"repository:{variant.repository}:pull"
    url = f"{variant.url}/v2/token?service=authmirror&scope={scope}"
    return {"rps": loadgen.requests_per_second(url, seconds, connections, basic(variant.license or ""))}


@dataclass(frozen=True)
class Test:
    name: str
    variants: tuple[str, ...]
    run: Callable  # (Variant) -> metrics, or with `together`: (list[Variant]) -> {variant: metrics}
    repeats: int
    together: bool = False  # measure all variants in one interleaved run


def tests_for(bed: Testbed, sizes: Sizes) -> list[Test]:
    d = bed.digests
    proxies = ("direct", "mitmproxy", "authmirror")
    s3 = ("direct S3", "authmirror pass S3", "authmirror follow S3")
    balanced = ("nginx + 1 replica", "nginx + 2 replicas")
    warm_caches = ("authmirror cache warm proxy", "authmirror cache warm redirect", "Distribution cache warm")
    cold_caches = ("authmirror cache cold", "Distribution cache cold")

    def cache_pull(v: Variant) -> dict[str, float]:
        return measure_pull(v, bed.workdir, bed.cold.take("cache-pull", v.name).tag if v.cold else TAG)

    def cache_burst(v: Variant) -> dict[str, float]:
        assert bed.upstream is not None
        return measure_burst(v, bed.workdir, bed.upstream, bed.cold.take("cache-burst", v.name), sizes.burst_clients)

    return [
        Test("pull", (*proxies, "direct S3", "authmirror pass S3"), lambda v: measure_pull(v, bed.workdir), sizes.repeats),
        Test("blob", (*proxies, *s3), lambda v: measure_blob(v, d["blob"], sizes.blob), sizes.repeats),
        Test("huge", proxies, lambda v: measure_blob(v, d["huge"], sizes.huge_blob), sizes.huge_repeats),
        Test("heads", proxies, lambda vs: measure_heads(vs, sizes.heads), sizes.repeats, together=True),
        Test("parallel", (*proxies, *balanced), lambda v: measure_parallel(v, d["parallel"], sizes.parallel_blob, sizes.parallel_count), sizes.repeats),
        Test("tokens", ("authmirror", *balanced), lambda v: measure_tokens(v, sizes.token_seconds, sizes.token_connections), sizes.repeats),
        Test("cache-pull", (*proxies, *cold_caches, *warm_caches), cache_pull, sizes.repeats),
        Test("cache-blob", (*proxies, *warm_caches), lambda v: measure_blob(v, d["blob"], sizes.blob), sizes.repeats),
        # Every variant pulls that repeat's cold image: the mirror without a cache fetches it all.
        Test("cache-burst", ("authmirror cache cold", "authmirror", "Distribution cache cold"), cache_burst, sizes.burst_repeats),
    ]


def run_all(bed: Testbed, sizes: Sizes, only: set[str] | None) -> tuple[Results, list[str]]:
    results: Results = {}
    failures: list[str] = []
    tests = [t for t in tests_for(bed, sizes) if not only or t.name in only]
    for test in tests:
        warm_up(bed, test, failures)
    for repeat in range(sizes.repeats):
        say(f"repeat {repeat + 1} of {sizes.repeats}")
        for test in tests:
            if repeat >= test.repeats:
                continue
            # Rotate the order every repeat: no variant always runs first (cold) or last.
            shift = repeat % len(test.variants)
            order = test.variants[shift:] + test.variants[:shift]
            if test.together:
                measure(results, failures, test, repeat, "+".join(order), lambda: test.run([bed.variants[n] for n in order]))
            else:
                for name in order:
                    measure(results, failures, test, repeat, name, lambda: {name: test.run(bed.variants[name])})
    return results, failures


def warm_up(bed: Testbed, test: Test, failures: list[str]) -> None:
    """Fill the warm caches with what the test reads, untimed."""
    for name in test.variants:
        variant = bed.variants[name]
        if not variant.warm or test.together:
            continue
        try:
            test.run(variant)
        except Exception as e:  # noqa: BLE001 - its measurements will fail and say so too
            failures.append(f"{test.name} / {name}: warm-up failed: {e}")
            print(f"    {test.name:11} {name:30} warm-up FAILED: {e}", file=sys.stderr, flush=True)


def measure(results: Results, failures: list[str], test: Test, repeat: int, label: str, run: Callable[[], dict]) -> None:
    try:
        measured = run()
    except Exception as e:  # noqa: BLE001 - report every failure, keep measuring the rest
        failures.append(f"{test.name} / {label}: {e}")
        print(f"    {test.name:11} {label:30} FAILED: {e}", file=sys.stderr, flush=True)
        return
    for name, metrics in measured.items():
        record(results, test.name, name, repeat, metrics)
        shown = "  ".join(f"{k}={v:.2f}" for k, v in metrics.items())
        print(f"    {test.name:11} {name:30} {shown}", flush=True)


# -- profiling ------------------------------------------------------------------------------


def start_profilers(bed: Testbed, directory: Path) -> dict[str, processes.Process]:
    """py-spy sampling the bare mitmproxy and authmirror for the whole run (not pausing them)."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else processes.require_binary("py-spy")
    profilers = {}
    for name in ("mitmproxy", "authmirror"):
        pid = bed.variants[name].pids[0]
        output = directory / f"{name}.collapsed.txt"
        args = [spy, "record", "--pid", str(pid), "--nonblocking", "--function", "--rate", "250", "--format", "raw", "--output", str(output)]
        profilers[name] = processes.start(args, directory / f"{name}.py-spy.log")
    return profilers


def stop_profilers(profilers: dict[str, processes.Process], directory: Path) -> str:
    """Stop py-spy (SIGINT makes it write its file) and summarize where each proxy spent its time."""
    for profiler in profilers.values():
        profiler.popen.send_signal(signal.SIGINT)
        try:
            profiler.popen.wait(30)
        except Exception:  # noqa: BLE001 - stop() below kills it
            pass
        profiler.stop()
    lines = []
    for name in profilers:
        path = directory / f"{name}.collapsed.txt"
        if path.exists():
            lines.append(bench_results.profile_summary(name, path.read_text()))
    summary = "\n\n".join(lines)
    (directory / "summary.txt").write_text(summary + "\n")
    return summary


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one repeat; writes no docs unless --out is given")
    parser.add_argument("--repeats", type=int, help="repeats per test (default: 5, quick: 1)")
    parser.add_argument("--only", action="append", choices=[*TEST_NAMES, "cache"], help="run only these tests (repeatable; cache: the three cache sections)")
    parser.add_argument("--out", type=Path, help="markdown report (default: docs/benchmarks.md for a full run)")
    parser.add_argument("--chart", type=Path, help="chart file, .svg or .png (default: next to the report, benchmarks.svg)")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, pull events)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="sample bare mitmproxy and authmirror with py-spy during the run; collapsed stacks and a summary go to DIR")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats, "huge_repeats": min(args.repeats, sizes.huge_repeats), "burst_repeats": min(args.repeats, sizes.burst_repeats)})
    only = {name for choice in args.only or () for name in (CACHE_TESTS if choice == "cache" else (choice,))}
    # Only a full run replaces the committed report; partial runs write where they are told to.
    out = args.out or (None if args.quick or args.only or args.repeats else REPO / "docs" / "benchmarks.md")
    chart = args.chart or (out.with_name("benchmarks.svg") if out else None)
    for program in ("docker-registry", "skopeo", "curl", "wrk", "nginx"):
        processes.require_binary(program)

    # SIGTERM stops us like Ctrl-C does: through the finally below, which stops what we started.
    signal.signal(signal.SIGTERM, interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="authmirror-bench-"))
    bed = Testbed(workdir, sizes, only)
    facts = bench_results.machine_facts(quick=args.quick)
    started = time.time()
    profilers: dict = {}
    profile = ""
    try:
        bed.start()
        if args.profile:
            profilers = start_profilers(bed, args.profile)
        results, failures = run_all(bed, sizes, only)
        if profilers:
            profile = stop_profilers(profilers, args.profile)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for profiler in profilers.values():
            profiler.stop()
        bed.stop()
        if args.keep:
            print(f"bench: work directory kept at {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["wall_time_s"] = round(time.time() - started)
    facts["load_after"] = bench_results.load_average()

    report = bench_results.Report(results, sizes.__dict__, facts, failures, str(workdir))
    print()
    print(report.core_table())
    if report.has_cache_results:
        print()
        print(report.cache_table())
    print()
    print(report.goals_table())
    if profile:
        print(f"\n{profile}\n\nbench: py-spy profiles in {args.profile}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    if out:
        if chart:
            bench_results.draw_chart(report, chart)
        bench_results.write_markdown(report, out, chart)
        print(f"\nbench: wrote {out}" + (f" and {chart}" if chart else ""))
    if failures:
        print(f"bench: {len(failures)} measurement(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
