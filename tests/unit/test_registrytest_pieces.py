import io

import pytest

from authmirror.hints import HINTS, hint_for, tls_advice
from authmirror.registrytest.model import KIND_CATEGORY, KIND_TITLES, Failure, ImageResult, Step, exit_code
from authmirror.registrytest.report import ProgressLine, marks_for, render_summary
from authmirror.registrytest.session import close_matches

CLOUD_TYPES = ("ecr", "gcr", "gar", "ghcr", "dockerhub", "quay", "acr")


def test_every_kind_has_a_category_a_title_and_a_default_hint():
    assert set(KIND_CATEGORY) == set(KIND_TITLES)
    for kind in KIND_CATEGORY:
        if kind not in ("realm_unreachable", "license_refused", "license_denied"):
            assert HINTS["default"].get(kind), kind
    assert {"license_refused", "license_denied", "realm_unreachable"} <= set(HINTS["mirror"])


@pytest.mark.parametrize("registry_type", CLOUD_TYPES)
def test_cloud_types_have_their_own_auth_hints(registry_type):
    assert HINTS[registry_type]["credentials_refused"] != HINTS["default"]["credentials_refused"]
    assert HINTS[registry_type]["permission_denied"] != HINTS["default"]["permission_denied"]


@pytest.mark.parametrize(
    "registry_type, kind, words",
    [
        ("ecr", "permission_denied", ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]),
        ("gar", "permission_denied", ["roles/artifactregistry.reader"]),
        ("gcr", "permission_denied", ["roles/artifactregistry.reader", "roles/storage.objectViewer"]),
        ("gcr", "credentials_refused", ["_json_key"]),
        ("ghcr", "credentials_refused", ["read:packages"]),
        ("dockerhub", "credentials_refused", ["access token"]),
        ("dockerhub", "rate_limited", ["rate limit", "retry after 42 s"]),
        ("quay", "credentials_refused", ["robot account"]),
        ("acr", "permission_denied", ["AcrPull"]),
        ("basic", "credentials_refused", ["apps.acme.registries[0].password", "env:VENDOR_PASS"]),
    ],
)
def test_hints_name_the_fix(registry_type, kind, words):
    text = hint_for(registry_type, kind, key="apps.acme.registries[0]", password_source="env:VENDOR_PASS", upstream_repository="team/app", retry_after="42")
    for word in words:
        assert word in text


def test_missing_placeholders_are_left_out():
    assert hint_for("default", "tag_not_found", tag="1.4") == "tag 1.4 does not exist in"


@pytest.mark.parametrize(
    "message, advice",
    [
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", "does not speak TLS"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate", "not trusted"),
        ("certificate verify failed: Hostname mismatch, certificate is not valid for 'x'", "not trusted"),
        ("something else", "check the https url"),
    ],
)
def test_tls_advice(message, advice):
    assert advice in tls_advice(message)


def result(image: str, kind: str | None) -> ImageResult:
    r = ImageResult(image, "direct", steps=[Step("resolve", True)])
    if kind:
        r.failure = Failure(kind, f"{kind} happened", step="manifest")
    return r


@pytest.mark.parametrize(
    "kinds, code",
    [
        ([None, None], 0),
        ([None, "tag_not_found"], 1),
        (["blob_missing", "credentials_refused"], 2),
        (["tag_not_found", "rate_limited"], 3),
        (["timeout", "license_denied", "tag_not_found"], 2),
    ],
)
def test_exit_code_precedence(kinds, code):
    assert exit_code([result(f"i{n}", k) for n, k in enumerate(kinds)]) == code


def test_summary_table_counts_categories():
    text = render_summary([result("a:1", None), result("b:1", "tag_not_found"), result("c:1", "dns")], {True: "+", False: "x", None: "."})
    assert "3 images: 1 pullable, 2 not pullable (image problems: 1, network problems: 1)" in text
    assert "exit code 3: network problems" in text
    assert "x b:1" in text and "tag not found: tag_not_found happened" in text


def test_close_matches_prefers_neighbouring_versions():
    assert close_matches("1.4", ["1.0", "1.1", "1.3", "2.0", "latest"])[:2] == ["1.3", "1.1"]
    assert close_matches("zzz", ["a", "b"]) == ["a", "b"]


def test_progress_only_on_terminals():
    quiet = io.StringIO()
    ProgressLine(quiet)(1, 3, result("a:1", None))
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    progress = ProgressLine(shown, enabled=True)
    progress(1, 2, result("a:1", None))
    progress(2, 2, result("b:1", "dns"))
    assert "[1/2]" in shown.getvalue() and shown.getvalue().endswith("b:1\n")


def test_plain_marks_when_the_output_cannot_show_them():
    ascii_stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert marks_for(ascii_stream)[False] == "XX"
