"""`authmirror registry test`: is an image pullable, and if not, exactly why?

Direct mode checks the vendor's upstream with the configured credentials, through the same
`Upstream` code the mirror uses (`direct.py`); via-proxy mode pulls through a running mirror with a
customer's license (`viaproxy.py`). Both end with the same pull steps (`pull.py`), and every
failure gets a kind, a category (image / credentials / network, each with its exit code) and a
hint for the registry type (`..hints`, shared with `config check` and `registry add`).
"""

from .direct import check_direct
from .model import EXIT_CREDENTIALS, EXIT_IMAGE, EXIT_NETWORK, EXIT_OK, Failure, ImageResult, Step, exit_code
from .report import ProgressLine, render_result, render_summary, to_json
from .runner import TestOptions, run_tests
from .viaproxy import check_via_proxy

__all__ = [
    "EXIT_CREDENTIALS", "EXIT_IMAGE", "EXIT_NETWORK", "EXIT_OK", "Failure", "ImageResult", "ProgressLine", "Step",
    "TestOptions", "check_direct", "check_via_proxy", "exit_code", "render_result", "render_summary", "run_tests", "to_json",
]
