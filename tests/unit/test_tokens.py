import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authmirror.errors import ConfigError, RegistryError
from authmirror.tokens import TokenIssuer, load_signing_key, parse_scope, token_allows


class Clock:
    now = 1_800_000_000.0

    def __call__(self):
        return self.now


def test_issue_and_verify_with_scope():
    clock = Clock()
    issuer = TokenIssuer(ec.generate_private_key(ec.SECP256R1()), 300, clock=clock)
    answer = issuer.issue({"lic": "lic_x"}, [{"type": "repository", "name": "proxy/acme/vendor/app", "actions": ["pull"]}])
    assert answer["expires_in"] == 300 and answer["token"] == answer["access_token"]
    claims = issuer.verify(answer["token"])
    assert claims["lic"] == "lic_x"
    assert token_allows(claims, "proxy/acme/vendor/app")
    assert not token_allows(claims, "proxy/acme/vendor/other")
    assert not token_allows(claims, "proxy/acme/vendor/app", "push")
    clock.now += 301
    with pytest.raises(RegistryError, match="expired"):
        issuer.verify(answer["token"])


def test_tokens_from_another_key_or_tampered_are_refused():
    clock = Clock()
    ours = TokenIssuer(ec.generate_private_key(ec.SECP256R1()), 300, clock=clock)
    theirs = TokenIssuer(ec.generate_private_key(ec.SECP256R1()), 300, clock=clock)
    foreign = theirs.issue({}, [])["token"]
    with pytest.raises(RegistryError) as e:
        ours.verify(foreign)
    assert e.value.status == 401
    token = ours.issue({}, [])["token"]
    head, body, sig = token.split(".")
    with pytest.raises(RegistryError):
        ours.verify(f"{head}.{body}x.{sig}")
    with pytest.raises(RegistryError):
        ours.verify("not-a-jwt")


def test_previous_key_still_verifies():
    clock = Clock()
    old_key = ec.generate_private_key(ec.SECP256R1())
    old = TokenIssuer(old_key, 300, clock=clock)
    new = TokenIssuer(ec.generate_private_key(ec.SECP256R1()), 300, (old_key.public_key(),), clock=clock)
    assert new.verify(old.issue({"lic": "a"}, [])["token"])["lic"] == "a"


def test_signing_key_generated_once_and_private(tmp_path):
    path = tmp_path / "key.pem"
    key = load_signing_key(f"file:{path}")
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_signing_key(f"file:{path}")
    assert key.private_numbers() == again.private_numbers()
    (tmp_path / "bad.pem").write_text("garbage")
    with pytest.raises(ConfigError, match="token.signing_key"):
        load_signing_key(f"file:{tmp_path / 'bad.pem'}")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("repository:proxy/acme/vendor/app:pull", ("repository", "proxy/acme/vendor/app", {"pull"})),
        ("repository:proxy/acme/vendor/app:pull,push", ("repository", "proxy/acme/vendor/app", {"pull", "push"})),
        ("registry:catalog:*", ("registry", "catalog", {"*"})),
        ("nonsense", None),
    ],
)
def test_parse_scope(text, expected):
    scope = parse_scope(text)
    assert (None if scope is None else (scope.type, scope.name, set(scope.actions))) == expected
