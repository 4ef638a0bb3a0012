"""authmirror: an authenticating mirror for container images, as a mitmproxy addon."""

__version__ = "0.1.0"
