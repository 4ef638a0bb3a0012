"""Hostile input against a running mirror: property-based requests (hypothesis), forged tokens and
licenses, and a canary listener proving the mirror never connects to a host it was not configured for.

Every answer is < 500 and, when an error, OCI error JSON; the mirror never logs a traceback; the
canary never sees a connection (except in the positive control, which proves it would notice).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authmirror.errors import OCI_CODES
from authmirror.tokens import key_id
from tests.support import processes, rawhttp
from tests.support.canary import BODY as CANARY_BODY
from tests.support.canary import Canary
from tests.support.faultserver import FaultServer
from tests.support.http import basic, request

from .conftest import LICENSES, MIRROR_ENV, license_entries

pytestmark = pytest.mark.e2e

IMAGE = "proxy/acme/vendor/vendor/app"
SCOPE = f"repository:{IMAGE}:pull"
ACCEPT = ("Accept", "application/vnd.oci.image.manifest.v1+json")
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Hostile:
    def __init__(self, mirror, canary, faults, vendor_key):
        self.mirror, self.canary, self.faults, self.vendor_key = mirror, canary, faults, vendor_key

    def send(self, data: bytes, head: bool = False, timeout: float = 10.0) -> rawhttp.RawAnswer | None:
        return rawhttp.send(self.mirror.port, data, head=head, timeout=timeout)

    def mirror_key(self):
        return serialization.load_pem_private_key((self.mirror.workdir / "token.pem").read_bytes(), password=None)


@pytest.fixture(scope="module")
def hostile(workdir, upstream):
    canary = Canary().start()
    faults = FaultServer(upstream.url).start()
    vendor_key = ec.generate_private_key(ec.SECP256R1())
    name = "hostile-mirror"
    (workdir / name).mkdir(parents=True, exist_ok=True)
    public = vendor_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (workdir / name / "vendor-license.pub").write_bytes(public)
    creds = {"username": "vendor", "password": "env:E2E_VENDOR_PASS"}
    apps = {
        "acme": {"registries": [
            {"name": "vendor", "type": "basic", "url": upstream.url, **creds},
            # a registry whose storage may be on loopback: the canary's positive control
            {"name": "allowing", "type": "basic", "url": faults.url, "redirect_hosts": ["127.0.0.1"], **creds},
        ]},
        "beta": {"registries": [{"name": "vendor", "type": "basic", "url": upstream.url, **creds}]},
    }
    port = processes.free_port()
    config = processes.write_mirror_config(
        workdir / name, port, apps, license_entries(), domains={"localhost": "acme"},
        limits={"failed_license_attempts": 0},  # the fuzzing below fails licenses on purpose
    )
    settings_ = yaml.safe_load(config.read_text())
    settings_["licenses"]["jwt_public_key"] = "file:vendor-license.pub"
    config.write_text(yaml.safe_dump(settings_))
    mirror = processes.start_mirror(workdir / name, config, port, env=MIRROR_ENV)
    yield Hostile(mirror, canary, faults, vendor_key)
    mirror.stop()
    faults.stop()
    canary.stop()


@pytest.fixture(autouse=True)
def nothing_reaches_the_canary(hostile):
    yield
    assert hostile.canary.connections == [], "the mirror contacted a host it was not configured for"
    log = hostile.mirror.log()
    assert "Traceback" not in log and "mitmproxy has crashed" not in log and "internal error" not in log


def assert_client_error(answer: rawhttp.RawAnswer | None, head: bool = False, allow_ok: bool = True) -> None:
    """< 500 always; an error is OCI error JSON with known codes (HEAD answers have no body)."""
    assert answer is not None, "the mirror hung up without an answer"
    assert answer.status < 500, (answer.status, answer.body[:300])
    if answer.status < 400:
        assert allow_ok, answer.status
        return
    if head:
        return
    errors = json.loads(answer.body)["errors"]
    assert errors and all(e["code"] in OCI_CODES and isinstance(e["message"], str) for e in errors), answer.body


def get(path: str, headers: list[tuple[str, str]], host: str = "127.0.0.1") -> bytes:
    return rawhttp.build("GET", path, [("Host", host), *headers])


# -- property-based ------------------------------------------------------------------------------

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200)
b64 = st.binary(max_size=120).map(lambda b: base64.b64encode(b).decode())
authorization = st.one_of(
    header_text,
    st.builds(lambda s: "Basic " + s, st.one_of(b64, header_text)),
    st.builds(lambda u, p: "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode(), header_text, header_text),
    st.builds(lambda s: "Bearer " + s, st.one_of(header_text, st.lists(b64, min_size=3, max_size=3).map(".".join))),
    st.sampled_from(["Basic", "Bearer", "Basic ", "Bearer ", "Digest x", "basic Og==", "Basic " + "A" * 5000]),
)


@EXAMPLES
@given(value=authorization)
def test_authorization_headers(hostile, value):
    answer = hostile.send(get(f"/v2/{IMAGE}/manifests/1.0", [("Authorization", value), ACCEPT]))
    assert_client_error(answer, allow_ok=False)
    assert answer.status in (400, 401, 403)


segment = st.one_of(
    st.sampled_from(["proxy", "acme", "vendor", "app", "..", ".", "", "%2f", "%2e%2e", "127.0.0.1:1", "manifests", "blobs", "tags", "list", "referrers", "_catalog", "token", "uploads", "1.0", "sha256:" + "a" * 64, "%00", "\u00e9"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="?#"), max_size=20),
)
path = st.lists(segment, max_size=8).map(lambda parts: "/" + "/".join(parts))
prefixed_path = st.tuples(st.sampled_from(["/v2/", f"/v2/{IMAGE}/", "/v2/proxy/acme/", "//", "/v2/proxy/acme/vendor/"]), path).map(lambda p: p[0] + p[1].lstrip("/"))


def quote_target(target: str) -> str:
    return urllib.parse.quote(target, safe="/%:@!$&'()*+,;=-._~")


@EXAMPLES
@given(target=st.one_of(path, prefixed_path), method=st.sampled_from(["GET", "HEAD", "GET", "PUT", "DELETE", "POST", "PATCH"]))
def test_paths(hostile, target, method):
    head = method == "HEAD"
    answer = hostile.send(rawhttp.build(method, quote_target(target), [("Host", "127.0.0.1"), ("Authorization", basic(LICENSES["valid"])["Authorization"]), ACCEPT]), head=head)
    assert_client_error(answer, head=head)


query = st.lists(st.tuples(st.sampled_from(["n", "last", "scope", "service", "authmirror-blob", "artifactType", "x", "", "digest"]), header_text.map(lambda s: urllib.parse.quote(s, safe=""))), max_size=5).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)


@EXAMPLES
@given(endpoint=st.sampled_from([f"/v2/{IMAGE}/tags/list", f"/v2/{IMAGE}/manifests/1.0", f"/v2/{IMAGE}/blobs/sha256:{'a' * 64}", f"/v2/{IMAGE}/referrers/sha256:{'a' * 64}", "/v2/_catalog", "/v2/", "/v2/token"]), q=query)
def test_query_strings(hostile, endpoint, q):
    answer = hostile.send(get(f"{endpoint}?{q}", [("Authorization", basic(LICENSES["valid"])["Authorization"]), ACCEPT]))
    assert_client_error(answer)


@EXAMPLES
@given(host=st.one_of(header_text, st.sampled_from(["", "localhost", "localhost:1", "evil.example", "[::1]", "127.0.0.1:{canary}", "localhost.evil.example", "LOCALHOST", "a" * 3000])))
def test_host_headers(hostile, host):
    host = host.replace("{canary}", str(hostile.canary.port))
    for target in (f"/v2/{IMAGE}/manifests/1.0", "/v2/vendor/vendor/app/manifests/1.0", "/v2/"):
        answer = hostile.send(rawhttp.build("GET", target, [("Host", host), ("Authorization", basic(LICENSES["valid"])["Authorization"]), ACCEPT]))
        assert_client_error(answer)
        if answer.status == 401:
            assert f":{hostile.canary.port}" not in answer.headers.get("WWW-Authenticate", "")


token_value = st.one_of(header_text, st.sampled_from([SCOPE, "repository:proxy/acme/vendor/vendor/app:push,pull", "repository:x:pull", "registry:catalog:*", "repository::", ":::", "repository:proxy/acme/127.0.0.1:1/app:pull"]))


@EXAMPLES
@given(params=st.lists(st.tuples(st.sampled_from(["scope", "service", "account", "client_id", "offline_token", "grant_type", "username", "password", "refresh_token"]), token_value), max_size=6), post=st.booleans(), with_license=st.booleans())
def test_token_endpoint_parameters(hostile, params, post, with_license):
    encoded = urllib.parse.urlencode(params)
    auth = [("Authorization", basic(LICENSES["valid"])["Authorization"])] if with_license else []
    if post:
        data = rawhttp.build("POST", "/v2/token", [("Host", "127.0.0.1"), ("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(encoded))), *auth], encoded.encode())
    else:
        data = get(f"/v2/token?{encoded}", auth)
    answer = hostile.send(data)
    assert_client_error(answer)
    if answer.status == 200:
        granted = jwt.decode(answer.body and json.loads(answer.body)["token"], options={"verify_signature": False})["access"]
        assert all(entry["actions"] == ["pull"] and entry["name"].startswith("proxy/acme/") for entry in granted)


garbage_request = st.one_of(
    st.binary(max_size=300).map(lambda b: b + b"\r\n\r\n"),
    st.tuples(st.sampled_from(["GET", "get", "G ET", "", "PRI", "CONNECT", "OPTIONS", "TRACE", "\x00"]), st.sampled_from(["/v2/", "*", "http://{canary}/v2/", "127.0.0.1:{canary}", "", "/v2/ /x", "\t"]), st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", "", "HTTP/1.1 x"])).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}\r\nHost: 127.0.0.1\r\n\r\n".encode()
    ),
)


@EXAMPLES
@given(data=garbage_request)
def test_malformed_requests(hostile, data):
    data = data.replace(b"{canary}", str(hostile.canary.port).encode())
    answer = hostile.send(data, timeout=1.0)
    if answer is not None:  # hanging up on (or waiting for more of) bytes that are no request is fine
        assert_client_error(answer)


@pytest.mark.parametrize(
    "name, data",
    [
        ("huge header", get("/v2/", [("X-Filler", "x" * 200_000)])),
        ("many headers", get("/v2/", [(f"X-H{i}", "y" * 50) for i in range(2000)])),
        ("huge url", get(f"/v2/{IMAGE}/manifests/{'a' * 100_000}", [("Authorization", basic(LICENSES["valid"])["Authorization"])])),
        ("huge query", get(f"/v2/{IMAGE}/tags/list?n=1&last={'z' * 100_000}", [("Authorization", basic(LICENSES["valid"])["Authorization"])])),
        ("huge token form", rawhttp.build("POST", "/v2/token", [("Host", "h"), ("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(5_000_011))], b"grant_type=" + b"p" * 5_000_000)),
        ("body on GET", rawhttp.build("GET", "/v2/", [("Host", "h"), ("Content-Length", "5")], b"hello")),
        ("bad content-length", rawhttp.build("POST", "/v2/token", [("Host", "h"), ("Content-Length", "-1")])),
        ("two content-lengths", rawhttp.build("POST", "/v2/token", [("Host", "h"), ("Content-Length", "1"), ("Content-Length", "2")], b"xx")),
        ("broken chunked", rawhttp.build("POST", "/v2/token", [("Host", "h"), ("Transfer-Encoding", "chunked")], b"zz\r\nhello\r\n0\r\n\r\n")),
        ("no host", rawhttp.build("GET", "/v2/", [])),
        ("http/1.0", rawhttp.build("GET", f"/v2/{IMAGE}/manifests/1.0", [("Authorization", basic(LICENSES["valid"])["Authorization"])], version="HTTP/1.0")),
        ("nul in path", get("/v2/proxy/acme/vendor/vendor/app\x00/manifests/1.0", [("Authorization", basic(LICENSES["valid"])["Authorization"])])),
    ],
)
def test_huge_and_malformed_requests(hostile, name, data):
    answer = hostile.send(data)
    if name == "broken chunked" and answer is None:
        # mitmproxy 11 closes the connection on a body whose framing it cannot parse (before any
        # hook could answer): no answer, but no 5xx and no traceback either.
        return
    assert_client_error(answer)


# -- the canary: no connection to unconfigured hosts --------------------------------------------


def test_canary_positive_control(hostile, built):
    """With redirect_hosts allowing loopback, a redirect to the canary IS followed: it would notice."""
    digest = built.single.layers[2].digest
    hostile.faults.add(r"/blobs/", status=307, headers={"Location": f"http://{hostile.canary.address}/blob"}, times=1)
    auth = basic(LICENSES["valid"])
    first = request("GET", f"{hostile.mirror.url}/v2/proxy/acme/allowing/vendor/app/blobs/{digest}", auth)
    assert first.status == 307
    second = request("GET", f"{hostile.mirror.url}{first.headers['Location']}", auth)
    assert second.status == 200 and second.body == CANARY_BODY
    assert len(hostile.canary.connections) == 1 and hostile.canary.connections[0].startswith(b"GET /blob ")
    assert b"Authorization" not in hostile.canary.connections[0], "vendor credentials never go to storage"
    hostile.canary.connections.clear()


def test_ssrf_attempts_never_reach_the_canary(hostile):
    canary = hostile.canary.address
    auth = ("Authorization", basic(LICENSES["valid"])["Authorization"])
    attempts = [
        rawhttp.build("GET", f"http://{canary}/v2/", [("Host", canary), auth]),
        rawhttp.build("GET", f"http://{canary}/v2/{IMAGE}/manifests/1.0", [("Host", canary), auth, ACCEPT]),
        rawhttp.build("CONNECT", canary, [("Host", canary), auth]),
        rawhttp.build("GET", f"/v2/proxy/acme/{canary}/app/manifests/1.0", [("Host", "h"), auth]),
        rawhttp.build("GET", "/v2/proxy/acme/127.0.0.1/app/manifests/1.0", [("Host", "h"), auth]),
        rawhttp.build("GET", f"/v2/proxy/acme/vendor/../../{canary}/x/manifests/1.0", [("Host", "h"), auth]),
        rawhttp.build("GET", f"/v2/proxy/acme/{canary.replace(':', '%3a')}/app/manifests/1.0", [("Host", "h"), auth]),
        rawhttp.build("GET", f"/v2/proxy%2facme%2f{canary}%2fapp/manifests/1.0", [("Host", "h"), auth]),
        rawhttp.build("GET", f"//{canary}/v2/", [("Host", "h"), auth]),
        rawhttp.build("GET", f"/v2/{IMAGE}/manifests/1.0", [("Host", canary), ("X-Forwarded-Host", canary), ("Forwarded", f"host={canary}"), auth, ACCEPT]),
        rawhttp.build("GET", f"/v2/{IMAGE}/blobs/sha256:{'a' * 64}?authmirror-blob=" + base64.urlsafe_b64encode(f"http://{canary}/".encode()).decode(), [("Host", "h"), auth]),
        rawhttp.build("GET", f"/v2/token?service=http://{canary}/&scope=repository:proxy/acme/{canary}/x:pull&realm=http://{canary}/", [("Host", "h"), auth]),
    ]
    for data in attempts:
        assert_client_error(hostile.send(data))
    assert hostile.canary.connections == []


# -- forged tokens and licenses ----------------------------------------------------------------


def manifest_with_bearer(hostile, token: str):
    return request("GET", f"{hostile.mirror.url}/v2/{IMAGE}/manifests/1.0", {"Authorization": f"Bearer {token}", "Accept": ACCEPT[1]})


def mirror_claims(**overrides) -> dict:
    now = int(time.time())
    claims = {"iss": "authmirror", "aud": "authmirror", "iat": now, "nbf": now - 5, "exp": now + 300, "sub": "x", "lic": "lic_x", "src": "jwt", "customer": "Mallory", "apps": ["acme"], "images": [], "lexp": None, "access": [{"type": "repository", "name": IMAGE, "actions": ["pull"]}]}
    return {**claims, **overrides}


def b64json(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(claims: dict, header: dict) -> str:
    return f"{b64json(header)}.{b64json(claims)}."


def hmac_signed(claims: dict, key: bytes, header: dict | None = None) -> str:
    """HS256 by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', **(header or {})})}.{b64json(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_forged_mirror_tokens_are_refused(hostile):
    mirror_key = hostile.mirror_key()
    kid = key_id(mirror_key.public_key())
    public_pem = mirror_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    other = ec.generate_private_key(ec.SECP256R1())
    good = jwt.encode(mirror_claims(), mirror_key, algorithm="ES256", headers={"kid": kid})
    assert manifest_with_bearer(hostile, good).status == 200, "control: a well-formed token from the mirror's key works"
    forged = {
        "other key, mirror's kid": jwt.encode(mirror_claims(), other, algorithm="ES256", headers={"kid": kid}),
        "other key, its own kid": jwt.encode(mirror_claims(), other, algorithm="ES256", headers={"kid": key_id(other.public_key())}),
        "alg none": unsigned(mirror_claims(), {"alg": "none", "typ": "JWT", "kid": kid}),
        # the classic confusion attack: HS256, keyed with the (public) verification key
        "HS256 keyed with the public key": hmac_signed(mirror_claims(), public_pem, {"kid": kid}),
        "expired": jwt.encode(mirror_claims(exp=int(time.time()) - 10), mirror_key, algorithm="ES256", headers={"kid": kid}),
        "wrong audience": jwt.encode(mirror_claims(aud="test-registry"), mirror_key, algorithm="ES256", headers={"kid": kid}),
        "wrong issuer": jwt.encode(mirror_claims(iss="someone"), mirror_key, algorithm="ES256", headers={"kid": kid}),
        "other repository": jwt.encode(mirror_claims(access=[{"type": "repository", "name": "proxy/acme/vendor/vendor/other", "actions": ["pull"]}]), mirror_key, algorithm="ES256", headers={"kid": kid}),
        "tampered payload": good.split(".")[0] + "." + b64json(mirror_claims(customer="Eve")) + "." + good.split(".")[2],
        "garbage": "a.b.c",
    }
    for what, token in forged.items():
        answer = manifest_with_bearer(hostile, token)
        assert answer.status == 401, (what, answer.status, answer.body)
        assert answer.errors()[0]["code"] == "UNAUTHORIZED", what


def license_jwt(hostile, key=None, algorithm="ES256", **overrides) -> str:
    now = int(time.time())
    claims = {"sub": "jwt-license-0001", "customer": "Wayne Enterprises", "apps": ["acme"], "exp": now + 3600, **overrides}
    return jwt.encode(claims, key or hostile.vendor_key, algorithm=algorithm)


def manifest_with_license(hostile, license: str):
    return request("GET", f"{hostile.mirror.url}/v2/{IMAGE}/manifests/1.0", {**basic(license), "Accept": ACCEPT[1]})


def test_vendor_signed_license_jwts(hostile):
    assert manifest_with_license(hostile, license_jwt(hostile)).status == 200, "control: a vendor-signed license pulls"
    vendor_pub = hostile.vendor_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    refused_401 = {
        "other key": license_jwt(hostile, key=ec.generate_private_key(ec.SECP256R1())),
        "alg none": unsigned({"sub": "jwt-license-0001", "customer": "Wayne Enterprises", "apps": ["acme"], "exp": int(time.time()) + 3600}, {"alg": "none", "typ": "JWT"}),
        "HS256 keyed with the public key": hmac_signed({"sub": "x", "customer": "Eve", "apps": ["acme"]}, vendor_pub),
        "tampered": license_jwt(hostile).rsplit(".", 1)[0][:-4] + "AAAA." + license_jwt(hostile).rsplit(".", 1)[1],
        "no subject": jwt.encode({"customer": "Wayne Enterprises", "apps": ["acme"]}, hostile.vendor_key, algorithm="ES256"),
    }
    for what, token in refused_401.items():
        answer = manifest_with_license(hostile, token)
        assert answer.status == 401, (what, answer.status, answer.body)
    expired = manifest_with_license(hostile, license_jwt(hostile, exp=int(time.time()) - 60))
    assert expired.status == 403 and "expired" in expired.errors()[0]["message"]
    other_app = manifest_with_license(hostile, license_jwt(hostile, apps=["beta"]))
    assert other_app.status == 403 and "does not include app 'acme'" in other_app.errors()[0]["message"]
