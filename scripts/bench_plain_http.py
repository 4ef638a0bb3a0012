"""mitmproxy script for the benchmark's bare mitmproxy: refuse TLS handshakes, as authmirror does
without a listener certificate, so clients that try https first (skopeo --tls-verify=false) use
plain http against both and the comparison stays fair."""


def tls_clienthello(data) -> None:
    data.ignore_connection = True
