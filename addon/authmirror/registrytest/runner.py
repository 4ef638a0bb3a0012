"""Check many images at once: concurrently, one Upstream per registry (as the mirror shares them),
reporting progress as each image finishes."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from ..config import Config
from ..upstreams import Upstream
from .direct import check_direct
from .model import ImageResult
from .viaproxy import check_via_proxy

Progress = Callable[[int, int, ImageResult], None]


@dataclass(frozen=True)
class TestOptions:
    deep: bool = False
    timeout: float = 15.0
    concurrency: int = 8
    registry_name: str | None = None  # direct mode: REF is REPOSITORY:TAG in this registry
    via_proxy: str | None = None  # the mirror's URL: check as a customer would
    license: str | None = None


async def run_tests(images: list[str], options: TestOptions, config: Config | None = None, progress: Progress | None = None) -> list[ImageResult]:
    """One result per image, in the order given."""
    if options.via_proxy is None and config is None:
        raise ValueError("direct checks need the config")
    # Every HTTP call runs in a worker thread: enough of them for the images and their blobs in flight.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=max(4, options.concurrency * 4)))
    limit = asyncio.Semaphore(max(1, options.concurrency))
    upstreams: dict[tuple[str, str], Upstream] = {}
    done = 0

    async def check(image: str) -> ImageResult:
        nonlocal done
        async with limit:
            if options.via_proxy is not None:
                result = await check_via_proxy(options.via_proxy, image, options.license or "", deep=options.deep, timeout=options.timeout)
            else:
                assert config is not None
                result = await check_direct(
                    config, image, registry_name=options.registry_name, upstreams=upstreams, deep=options.deep, timeout=options.timeout
                )
        done += 1
        if progress is not None:
            progress(done, len(images), result)
        return result

    return list(await asyncio.gather(*(check(image) for image in images)))
