"""mitmproxy entry point: `mitmdump -s addon/proxy.py [--set authmirror_config=PATH]`."""

from authmirror.addon import AuthMirror

addons = [AuthMirror()]
