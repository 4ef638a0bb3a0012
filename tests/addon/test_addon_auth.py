import json

import pytest
from mitmproxy import exceptions

from .conftest import loaded_addon, VALID, basic, errors_of, events, make_flow, run_request, write_config


def test_configure_switches_to_reverse_mode_on_config_listen(addon_ctx):
    addon, tctx, _ = addon_ctx
    assert tctx.options.mode == ["reverse:http://127.0.0.1:9@127.0.0.1:5999"]
    assert tctx.options.connection_strategy == "lazy"
    assert tctx.options.keep_host_header is True


def test_bad_config_is_refused_naming_the_key(tmp_path, config_path):
    bad = write_config(tmp_path / "bad", blob_redirects="sometimes") if (tmp_path / "bad").mkdir() is None else None
    with loaded_addon(config_path) as (addon, tctx, _fake):
        with pytest.raises(exceptions.OptionsError, match="blob_redirects"):
            tctx.configure(addon, authmirror_config=str(bad))
        assert addon.mirror.config.path == config_path  # the running config stays


async def test_base_endpoint_challenges_then_accepts_a_license(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await run_request(addon, make_flow("/v2/"))
    assert flow.response.status_code == 401
    assert flow.response.headers["WWW-Authenticate"] == 'Bearer realm="http://mirror.test:5999/v2/token",service="authmirror"'
    assert errors_of(flow)[0]["code"] == "UNAUTHORIZED"
    flow = await run_request(addon, make_flow("/v2/", authorization=basic(VALID)))
    assert flow.response.status_code == 200


async def test_custom_domain_challenge_points_at_the_domain(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await run_request(addon, make_flow("/v2/vendor/app/manifests/1.0", host="registry.acme.example"))
    assert flow.response.status_code == 401
    assert 'realm="http://registry.acme.example:5999/v2/token"' in flow.response.headers["WWW-Authenticate"]
    assert 'scope="repository:vendor/app:pull"' in flow.response.headers["WWW-Authenticate"]


async def test_token_get_and_bearer_use(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await run_request(addon, make_flow("/v2/token?service=authmirror&scope=repository:proxy/acme/vendor/app:pull", authorization=basic(VALID)))
    assert flow.response.status_code == 200
    token = json.loads(flow.response.content)
    assert set(token) >= {"token", "access_token", "expires_in", "issued_at"}
    assert VALID not in flow.response.text
    # the license is gone from the flow once checked
    assert VALID not in json.dumps(flow.request.headers.fields.__repr__())
    assert "redacted" in flow.request.headers["Authorization"]

    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/manifests/1.0", authorization=f"Bearer {token['token']}"))
    assert flow.response is None and flow.request.host == "upstream.test"
    # a token for one repository does not open another
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/other/manifests/1.0", authorization=f"Bearer {token['token']}"))
    assert flow.response.status_code == 401


async def test_token_post_oauth2_password_grant(addon_ctx, config_path):
    addon, _, _ = addon_ctx
    form = f"grant_type=password&client_id=containerd&username=x&password={VALID}&scope=repository%3Aproxy%2Facme%2Fvendor%2Fapp%3Apull&service=authmirror"
    flow = await run_request(addon, make_flow("/v2/token", method="POST", content=form.encode(), headers={"content-type": "application/x-www-form-urlencoded"}))
    assert flow.response.status_code == 200
    assert json.loads(flow.response.content)["scope"] == "repository:proxy/acme/vendor/app:pull"
    assert VALID not in flow.request.text  # redacted from the form
    addon.response(flow)
    [event] = events(config_path)
    assert event["action"] == "token" and event["customer"] == "Globex" and VALID not in json.dumps(event)


async def test_no_anonymous_tokens(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await run_request(addon, make_flow("/v2/token?scope=repository:proxy/acme/vendor/app:pull"))
    assert flow.response.status_code == 401


@pytest.mark.parametrize(
    "license, path, status, code, words",
    [
        ("no-such-license-x", "/v2/proxy/acme/vendor/app/manifests/1.0", 401, "UNAUTHORIZED", "unknown license"),
        ("expired-license-01", "/v2/proxy/acme/vendor/app/manifests/1.0", 403, "DENIED", "expired on 2020-01-31"),
        ("revoked-license-01", "/v2/proxy/acme/vendor/app/manifests/1.0", 403, "DENIED", "revoked"),
        ("beta-only-license", "/v2/proxy/acme/vendor/app/manifests/1.0", 403, "DENIED", "does not include app 'acme'"),
        ("limited-license-01", "/v2/proxy/acme/vendor/secret/manifests/1.0", 403, "DENIED", "does not allow image 'secret'"),
        (VALID, "/v2/proxy/acme/ghost/app/manifests/1.0", 404, "NAME_UNKNOWN", "no registry 'ghost'"),
    ],
)
async def test_license_outcomes(addon_ctx, license, path, status, code, words):
    addon, _, fake = addon_ctx
    for via_token in (False, True):
        if via_token and status == 401:
            continue
        if via_token:
            token_flow = await run_request(addon, make_flow(f"/v2/token?scope=repository:{path.split('/v2/')[1].rsplit('/manifests', 1)[0]}:pull", authorization=basic(license)))
            if token_flow.response.status_code != 200:
                # unknown, expired or revoked: the token endpoint says why, with a 401 clients display
                assert (token_flow.response.status_code, errors_of(token_flow)[0]["code"]) == (401, "UNAUTHORIZED")
                assert words in errors_of(token_flow)[0]["message"]
                continue
            authorization = "Bearer " + json.loads(token_flow.response.content)["token"]
        else:
            authorization = basic(license)
        flow = await run_request(addon, make_flow(path, authorization=authorization))
        assert flow.response is not None and flow.response.status_code == status
        [error] = errors_of(flow)
        assert error["code"] == code and words in error["message"]
    assert fake.calls == []  # nothing went upstream


@pytest.mark.parametrize("method, path", [("PUT", "/v2/proxy/acme/vendor/app/manifests/1.0"), ("DELETE", "/v2/proxy/acme/vendor/app/manifests/1.0"), ("POST", "/v2/proxy/acme/vendor/app/blobs/uploads/"), ("PATCH", "/v2/proxy/acme/vendor/app/blobs/uploads/abc"), ("DELETE", "/v2/proxy/acme/vendor/app/blobs/sha256:" + "a" * 64)])
async def test_push_and_delete_are_refused_locally(addon_ctx, method, path):
    addon, _, fake = addon_ctx
    flow = await run_request(addon, make_flow(path, method=method, authorization=basic(VALID)))
    assert flow.response.status_code == 405
    assert errors_of(flow)[0]["code"] == "UNSUPPORTED"
    assert fake.calls == []


async def test_head_error_answers_have_no_body(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/manifests/1.0", method="HEAD"))
    assert flow.response.status_code == 401 and flow.response.raw_content == b""


async def test_malformed_authorization_is_401_and_never_forwarded(addon_ctx):
    addon, _, fake = addon_ctx
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/manifests/1.0", authorization="Basic %%%"))
    assert flow.response.status_code == 401 and "malformed" in errors_of(flow)[0]["message"]
    assert fake.calls == []


async def test_malformed_reference_is_400_before_forwarding(addon_ctx):
    addon, _, fake = addon_ctx
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/blobs/sha256:1234", authorization=basic(VALID)))
    assert flow.response.status_code == 400 and errors_of(flow)[0]["code"] == "DIGEST_INVALID"
    assert fake.calls == []


async def test_refusals_are_attributed_to_the_customer_in_pull_events(addon_ctx, config_path):
    addon, _, _ = addon_ctx
    for license in ("expired-license-01", "limited-license-01"):
        token_flow = await run_request(addon, make_flow("/v2/token?scope=repository:proxy/acme/vendor/secret:pull", authorization=basic(license)))
        addon.response(token_flow)
        flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/secret/manifests/1.0", authorization=basic(license)))
        addon.response(flow)
    token_expired, manifest_expired, token_limited, manifest_limited = events(config_path)
    assert (token_expired["customer"], token_expired["status"], token_expired["error_code"]) == ("Hooli", 401, "UNAUTHORIZED")
    assert (token_expired["app"], token_expired["registry"], token_expired["repository"]) == ("acme", "vendor", "secret")
    assert (manifest_expired["customer"], manifest_expired["status"], manifest_expired["error_code"]) == ("Hooli", 403, "DENIED")
    assert (token_limited["customer"], token_limited["status"]) == ("Stark", 200)  # a token, without that scope
    assert (manifest_limited["customer"], manifest_limited["status"], manifest_limited["error_code"]) == ("Stark", 403, "DENIED")
    assert all(e["license"].startswith("lic_") for e in events(config_path))


async def test_flows_are_annotated_for_mitmweb(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/manifests/1.0", authorization=basic("expired-license-01")))
    addon.response(flow)
    assert flow.comment == "Hooli: manifest acme/vendor/app:1.0 -> 403 DENIED"
    assert flow.marked
    assert flow.metadata["authmirror"]["customer"] == "Hooli" and flow.metadata["authmirror"]["action"] == "manifest"
    flow.get_state()  # metadata stays serialisable (-w, mitmweb)
