import base64

import pytest

from authmirror.clientauth import parse_authorization
from authmirror.errors import RegistryError


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_splits_at_first_colon():
    credential = parse_authorization(basic("user:lic:with:colons"))
    assert (credential.scheme, credential.username, credential.secret) == ("basic", "user", "lic:with:colons")


def test_bearer_and_none():
    assert parse_authorization("Bearer abc.def.ghi").secret == "abc.def.ghi"
    assert parse_authorization(None).scheme == "none"
    assert parse_authorization("  ").scheme == "none"


@pytest.mark.parametrize("header", ["Basic !!!notbase64", basic("no-colon"), basic("user:"), "Bearer ", "Bearer a b", "Digest abc", "Basic " + base64.b64encode(b"\xff\xfe:x").decode()])
def test_malformed_is_401_not_a_crash(header):
    with pytest.raises(RegistryError) as e:
        parse_authorization(header)
    assert e.value.status == 401 and "credential" not in e.value.message.lower() or e.value.code == "UNAUTHORIZED"
    assert "secret" not in repr(e.value)
