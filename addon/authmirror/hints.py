"""What to do about a failure: the failure kinds, and one hint per registry type and kind.

Shared by `authmirror config check`, `registry add`, `registry test` and the mirror's log. One table:
registry type -> failure kind -> hint; a type's own entry wins over `default`, and the `mirror` type
holds the hints for checks through a running mirror (`registry test --via-proxy`). Placeholders come
from the registry (`registry_context`) and the failure (registry, key, config, host, repository,
upstream_repository, tag, retry_after, status, tls_advice, ...); a missing one is left out rather
than failing.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Any

from .config import RegistryConfig
from .errors import ConfigError, RegistryError
from .upstreams.aws import PULL_ACTIONS

log = logging.getLogger("authmirror.upstream")

# Every failure kind: kind -> (category, title). The category decides `registry test`'s exit code
# (see registrytest/model.py); the title is how reports name the kind.
KINDS: dict[str, tuple[str, str]] = {
    "config": ("credentials", "configuration error"),
    "bad_reference": ("credentials", "invalid image reference"),
    "no_registry": ("credentials", "no configured registry serves this image"),
    "credentials_unavailable": ("credentials", "credentials could not be obtained"),
    "credentials_refused": ("credentials", "credentials refused"),
    "permission_denied": ("credentials", "permission denied"),
    "realm_not_allowed": ("credentials", "token service host not allowed"),
    "realm_unreachable": ("network", "token service unreachable"),
    "license_refused": ("credentials", "license refused"),
    "license_denied": ("credentials", "license not entitled to this image"),
    "repository_not_found": ("image", "repository not found"),
    "tag_not_found": ("image", "tag not found"),
    "manifest_not_found": ("image", "manifest not found"),
    "unsupported_manifest": ("image", "unsupported manifest type"),
    "bad_manifest": ("image", "broken manifest"),
    "blob_missing": ("image", "blob missing"),
    "digest_mismatch": ("image", "digest mismatch"),
    "size_mismatch": ("image", "size mismatch"),
    "dns": ("network", "host name not found"),
    "connect": ("network", "cannot connect"),
    "tls": ("network", "TLS failure"),
    "timeout": ("network", "timeout"),
    "protocol": ("network", "broken answer"),
    "rate_limited": ("network", "rate limited"),
    "upstream_error": ("network", "registry error"),
    "storage_refused": ("network", "storage redirect refused"),
}

ECR_ACTIONS = ", ".join(PULL_ACTIONS)
_GOOGLE_KEY_REFUSED = (
    "Google refused the service account key in {key}.service_account_json: it may be deleted or disabled, or the service "
    "account removed; create a new JSON key (IAM > Service accounts > Keys > Add key)"
)
_GOOGLE_CREDENTIALS_REFUSED = (
    "Google refused the credentials: the service account key is revoked or for another project; "
    "with json_key: true the username must be _json_key and the password the whole key JSON"
)
_GOOGLE_CONNECT = (
    "nothing accepts connections at {host}, or at Google's token endpoint: check the url in {key}, and that this machine "
    "may reach both (firewall, egress proxy)"
)

HINTS: dict[str, dict[str, str]] = {
    "default": {
        "config": "fix the key named in the message; `authmirror registry add TYPE` explains what each type needs",
        "bad_reference": "write the image as [HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]",
        "no_registry": "add the registry to the config ({config}), or name it with --registry [APP/]NAME and give REPOSITORY:TAG",
        "credentials_unavailable": "the registry's credentials could not be obtained; check {key} in {config}",
        "credentials_refused": "the registry refused the configured credentials: check {key}.username and {key}.password "
        "(the password comes from {password_source}); they must be able to `docker login {host}`",
        "permission_denied": "the credentials were accepted but may not pull {upstream_repository}: grant that account pull/read access to the repository",
        "realm_not_allowed": "the registry sends clients to a token service on another host; if it is the registry's own, add that host to {key}.auth_hosts",
        "repository_not_found": "repository {upstream_repository} does not exist on {host}{prefix_note}, or the credentials cannot see it; "
        "check the image name{close_repositories}",
        "tag_not_found": "tag {tag} does not exist in {upstream_repository}{close_tags}",
        "manifest_not_found": "no manifest with digest {reference} in {upstream_repository}: the image was deleted or the digest is mistyped",
        "unsupported_manifest": "the registry serves a manifest type container runtimes no longer pull (Docker schema 1?): rebuild and push the image with a current tool",
        "bad_manifest": "the manifest is not valid JSON of a known type: re-push the image",
        "blob_missing": "the manifest references a blob the registry does not have (a broken push or garbage-collected layer): re-push the image",
        "digest_mismatch": "the registry served content whose sha256 does not match its digest: storage corruption or a misbehaving proxy in between; re-push the image",
        "size_mismatch": "the registry served a blob of another size than the manifest says: re-push the image",
        "dns": "host {host} does not resolve: check the url in {key}, and DNS from this machine",
        "connect": "check the url's host and port in {key}: nothing accepts connections at {host}. Is the registry running, "
        "and may this machine reach it (firewall, egress proxy)?",
        "tls": "TLS with {host} failed: {tls_advice}",
        "timeout": "{host} did not answer within {timeout} s: check the network path from this machine (firewalls, proxies), "
        "or raise --timeout for a slow registry",
        "protocol": "the connection broke or the answer was not a registry's: is {host} a container registry (OCI distribution API)?",
        "rate_limited": "the registry is rate limiting these credentials: retry after {retry_after} s, or raise the account's limits. "
        "In CI, test fewer images at once (--concurrency)",
        "upstream_error": "the registry itself failed (HTTP {status}); retry later, or check its status page",
        "storage_refused": "the registry redirected the blob to a storage host the mirror will not contact; allow it with {key}.redirect_hosts",
    },
    "basic": {},
    "anonymous": {
        "credentials_refused": "the registry wants credentials, and type anonymous sends none: use type basic (or the registry's own type) "
        "with a username and password",
        "permission_denied": "{upstream_repository} is not public: use type basic (or the registry's own type) with credentials that may pull it",
    },
    "ecr": {
        "credentials_unavailable": "AWS refused to issue an ECR token: check {key}.access_key_id/secret_access_key (IAM > Users > "
        "Security credentials) and {key}.region; with role_arn, that the role's trust policy lets them assume it. "
        "The IAM identity needs ecr:GetAuthorizationToken",
        "credentials_refused": "ECR refused the token: the AWS keys in {key} are invalid or for another account, or {key}.registry_id does not match the host",
        "permission_denied": f"the IAM identity may not pull {{upstream_repository}}: attach an IAM policy (or a repository policy) allowing "
        f"{ECR_ACTIONS} (GetAuthorizationToken on Resource \"*\") on the repositories (`authmirror registry add ecr --explain` prints it)",
        "repository_not_found": "ECR has no repository {upstream_repository} in this account and region (names are the full path, exact and "
        "case-sensitive): check the name, and that registry_id/region point at the account holding it{close_repositories}",
        "tag_not_found": "ECR repository {upstream_repository} has no tag {tag}{close_tags} (a lifecycle policy may have expired it)",
        "connect": "could not connect to {host} or to the ECR API: the mirror must reach the ECR API (api.ecr.<region>.amazonaws.com, or "
        "{key}.endpoint_url) and the registry host; check egress rules and VPC endpoints (ecr.api, ecr.dkr, s3)",
        "rate_limited": "ECR throttled the requests (API rate quotas per account and region); retry after {retry_after} s or ask AWS for a quota increase",
    },
    "gcr": {
        "credentials_unavailable": _GOOGLE_KEY_REFUSED,
        "credentials_refused": _GOOGLE_CREDENTIALS_REFUSED,
        "permission_denied": "the service account may not pull {upstream_repository}: grant it roles/artifactregistry.reader on the gcr.io "
        "repository in the image's project (legacy GCR: roles/storage.objectViewer on bucket artifacts.<project>.appspot.com)",
        "repository_not_found": "no image {upstream_repository} in this project: images live under the project (https://gcr.io/<project> as url, "
        "or <project>/<image> as repository); check the project id and the path{close_repositories}",
        "connect": _GOOGLE_CONNECT,
    },
    "gar": {
        "credentials_unavailable": _GOOGLE_KEY_REFUSED,
        "credentials_refused": _GOOGLE_CREDENTIALS_REFUSED,
        "permission_denied": "the service account may not pull {upstream_repository}: grant it roles/artifactregistry.reader on the repository "
        "or project: gcloud artifacts repositories add-iam-policy-binding REPO --location=REGION --member=serviceAccount:EMAIL "
        "--role=roles/artifactregistry.reader",
        "repository_not_found": "Artifact Registry has no {upstream_repository}: the url is https://<region>-docker.pkg.dev/<project>/<repository>, "
        "then the image; check region, project and repository{close_repositories}",
        "connect": _GOOGLE_CONNECT,
    },
    "ghcr": {
        "credentials_refused": "GHCR refused the token in {key}.password (from {password_source}): use a personal access token (classic) "
        "with the read:packages scope, or a fine-grained token with package read access; {key}.username is the GitHub user that owns it",
        "permission_denied": "the token may not read {upstream_repository}: it needs the read:packages scope and the user access to the package "
        "(package settings > Manage access, or org membership); GHCR also answers this for packages that do not exist",
        "repository_not_found": "GHCR has no package {upstream_repository} visible to this token (GHCR hides packages you cannot read): check the "
        "owner/image name and the package's access settings{close_repositories}",
        "rate_limited": "GitHub is rate limiting the token; retry after {retry_after} s",
    },
    "dockerhub": {
        "credentials_refused": "Docker Hub refused the credentials: {key}.username is the Docker ID (not the email) and {key}.password a personal "
        "access token (Account settings > Personal access tokens, read-only is enough), not the account password when 2FA is on",
        "permission_denied": "the Docker ID may not pull {upstream_repository}: private repositories need a member of the owning organization, "
        "in a team that can read them (Docker Hub also answers this for repositories that do not exist)",
        "repository_not_found": "Docker Hub has no repository {upstream_repository}: check namespace/repository; official images live under "
        "library/ (the mirror adds library/ for one-part names){close_repositories}",
        "rate_limited": "Docker Hub's pull rate limit was hit (limits per account and per IP; anonymous pulls have the lowest); retry after "
        "{retry_after} s (the window shows in ratelimit-remaining in the pull events), authenticate with a paid account's access token, "
        "or turn on the mirror's cache",
    },
    "quay": {
        "credentials_refused": "Quay refused the credentials: use a robot account; username is the robot's full name <organization>+<robot>, "
        "password its token (Organization > Robot Accounts)",
        "permission_denied": "the robot account has no Read permission on {upstream_repository}: grant it in the repository's settings "
        "(or give the robot a default permission in the organization)",
        "repository_not_found": "Quay has no repository {upstream_repository} visible to these credentials{close_repositories}",
    },
    "acr": {
        "credentials_refused": "ACR refused the credentials: use a service principal (username = application (client) ID, password = a client "
        "secret that has not expired) or a repository-scoped token (token name + one of its passwords); the admin user must be enabled if you use it",
        "permission_denied": "the service principal may not pull {upstream_repository}: assign it AcrPull on the registry (az role assignment "
        "create --assignee APP_ID --role AcrPull --scope REGISTRY_RESOURCE_ID), or add content/read to the token's scope map",
        "repository_not_found": "ACR has no repository {upstream_repository}: check the name and, for a repository-scoped token, that its scope "
        "map covers it{close_repositories}",
    },
    "mirror": {
        "license_refused": "the mirror refused the license (its message says why: unknown, expired or revoked). Check the license id "
        "customers use as password, and its expires/revoked entries in the mirror's licenses file",
        "license_denied": "the license is valid but not entitled to this image: add the app (or an images pattern) to the license, "
        "or test with the license of a customer who has this app",
        "credentials_refused": "the mirror reached the vendor's registry, but the vendor's credentials were refused there: "
        "run `authmirror registry test --image <upstream ref>` with the mirror's config to see why",
        "permission_denied": "the mirror's vendor credentials may not pull this image: run `authmirror registry test` "
        "with the mirror's config for the registry-specific fix",
        "repository_not_found": "the vendor's registry has no such repository behind this path; image paths through the mirror are "
        "proxy/<app>/<registry>/<repository>:<tag>",
        "tag_not_found": "tag {tag} does not exist upstream{close_tags}",
        "dns": "the mirror's host {host} does not resolve from here",
        "connect": "nothing accepts connections at {host}: is the mirror running there (authmirror serve), and is the port open?",
        "tls": "TLS with the mirror at {host} failed: {tls_advice}",
        "timeout": "the mirror at {host} did not answer within {timeout} s",
        "realm_unreachable": "the mirror's token realm ({message}) is not reachable from here: public_url in the mirror's config "
        "must be the address customers use",
        "upstream_error": "the mirror could not get the image from the vendor's registry (HTTP {status}); its message names the registry",
        "rate_limited": "the vendor's registry is rate limiting the mirror; retry after {retry_after} s (the mirror's cache avoids this)",
    },
}


class _Lenient(dict):
    def __missing__(self, key: str) -> str:
        return ""


def hint_for(registry_type: str, kind: str, **context: Any) -> str:
    """The hint for `kind` on a registry of `registry_type`, placeholders filled from `context`."""
    template = HINTS.get(registry_type, {}).get(kind) or HINTS["default"].get(kind, "")
    values = _Lenient({k: ("" if v is None else v) for k, v in context.items()})
    return string.Formatter().vformat(template, (), values).strip()


def registry_context(registry: RegistryConfig, config_path: Path | None = None, timeout: float | None = None) -> dict[str, Any]:
    """The placeholders a registry's config fills in (no secret: sources, never values)."""
    return {
        "registry": f"{registry.app}/{registry.name}",
        "key": registry.key,
        "config": str(config_path) if config_path else "",
        "host": f"{registry.host}:{registry.port}",
        "password_source": registry.password.source if registry.password else "nowhere (none configured)",
        "prefix_note": f" (the url's path '{registry.path_prefix}/' is put in front of the repository)" if registry.path_prefix else "",
        "upstream_repository": "the registry's repositories",  # a check of one image says which
        "timeout": f"{timeout:g}" if timeout else "",
    }


# -- sorting failures into kinds ---------------------------------------------------------------


def answer_kind(status: int, code: str, what: str, by_digest: bool = False) -> str:
    """A registry's error answer to `what` (v2, token, credentials, repository, manifest, child, blob,
    tags) -> a failure kind."""
    if status == 401:
        return "credentials_refused"
    if status == 403:
        return "permission_denied"
    if status == 404:
        if what == "v2":
            return "protocol"  # no /v2/ at all: not a registry's API
        if code == "NAME_UNKNOWN" or what == "repository":
            return "repository_not_found"
        if code == "BLOB_UNKNOWN" or what == "blob":
            return "blob_missing"
        if what in ("manifest", "child"):
            return "manifest_not_found" if what == "child" or by_digest else "tag_not_found"
        return "repository_not_found"
    if status == 429:
        return "rate_limited"
    if status == 400 and code in ("NAME_INVALID", "TAG_INVALID", "DIGEST_INVALID"):
        return "bad_reference"
    if status >= 500:
        return "upstream_error"
    return "protocol"


def failure_kind(error: Exception, what: str = "") -> str:
    """Which kind of failure an error from a check, a pull or the config is."""
    if isinstance(error, ConfigError):
        return "config"
    if not isinstance(error, RegistryError):
        return "upstream_error"
    said = error.diagnostics
    if said is not None and said.network:
        return said.network
    if said is not None and said.status:
        return answer_kind(said.status, said.code, what)
    # Nothing from the registry itself: the mirror's own refusals, or a credential provider (AWS, Google).
    if "token realm" in error.message:
        return "realm_not_allowed"
    if error.code == "UNAUTHORIZED":
        return "credentials_unavailable"
    if error.code == "DENIED":
        return "permission_denied"
    if error.status == 504:
        return "timeout"
    return answer_kind(error.status, error.code, what)


def error_context(error: Exception) -> dict[str, Any]:
    """The placeholders an error fills in: status, code, retry_after, tls_advice, message."""
    if not isinstance(error, RegistryError):
        return {"message": str(error)}
    said = error.diagnostics
    retry_after = (said.retry_after if said else None) or (error.headers or {}).get("Retry-After") or "?"
    context: dict[str, Any] = {"status": (said.status if said else None) or error.status, "retry_after": retry_after, "message": error.message}
    if said is not None and said.network == "tls":
        context["tls_advice"] = tls_advice(said.message)
    return context


def hint_for_error(registry_type: str, error: Exception, **context: Any) -> str:
    """The hint for an error from a check (`config check`, `registry add`), or for a config error."""
    if isinstance(error, ConfigError):
        return config_hint(error)
    return hint_for(registry_type, failure_kind(error), **{**error_context(error), **context})


def config_hint(error: ConfigError) -> str:
    """A concrete next step for a configuration error."""
    message = error.message
    if "environment variable" in message and "not set" in message:
        return "export that variable in the mirror's environment (or point the key at a file: file:/path/to/secret)"
    if message.startswith("cannot read"):
        return "check the path (relative paths are relative to the config file's directory) and that the mirror's user may read it"
    if error.key.endswith("service_account_json"):
        return "use the JSON key of a service account: IAM > Service accounts > Keys > Add key > Create new key > JSON"
    if "unknown key" in message:
        return "remove or rename the key (typos are refused on purpose)"
    return HINTS["default"]["config"]


def tls_advice(message: str, scheme: str = "https") -> str:
    """The usual causes of a TLS failure, told apart by the error text."""
    lowered = message.lower()
    if "wrong version number" in lowered or "unknown protocol" in lowered or "record layer failure" in lowered:
        return "the server does not speak TLS on that port: if it serves plain HTTP, write the url with http://"
    if "certificate verify failed" in lowered or "self-signed" in lowered or "self signed" in lowered:
        return ("its certificate is not trusted here (self-signed or a private CA): install the CA certificate in the system "
                "trust store or point SSL_CERT_FILE at it")
    if "hostname mismatch" in lowered or "doesn't match" in lowered:
        return "its certificate is for another host name: use the host name the certificate names"
    if "expired" in lowered:
        return "its certificate has expired"
    return f"check the {scheme} url and the server's certificate ({message})"


def log_refusal(registry: RegistryConfig, upstream_repository: str, status: int, request_id: str) -> None:
    """The upstream refused the vendor's credentials on a pull: tell the vendor (in the mirror's log)
    what to fix; the customer's answer stays generic."""
    kind = "credentials_refused" if status == 401 else "permission_denied"
    what = "refused the vendor's credentials" if status == 401 else "denied the vendor's credentials access"
    hint = hint_for(registry.type, kind, **{**registry_context(registry), "upstream_repository": upstream_repository})
    log.warning("%s: upstream registry '%s' %s (HTTP %d); hint: %s", request_id, registry.name, what, status, hint)
