"""What to do about a failure, by registry type and failure kind.

One table: registry type -> failure kind -> hint. A type's own entry wins over `default`. The
`mirror` type holds the hints for checks through a running mirror (`--via-proxy`). Placeholders
come from the check's context (registry, key, repository, tag, host, retry_after, ...); a missing
one is left out rather than failing.
"""

from __future__ import annotations

import string
from typing import Any

ECR_ACTIONS = "ecr:GetAuthorizationToken, ecr:BatchGetImage, ecr:GetDownloadUrlForLayer and ecr:BatchCheckLayerAvailability"

HINTS: dict[str, dict[str, str]] = {
    "default": {
        "bad_reference": "write the image as [HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]",
        "no_registry": "add the registry to the config ({config}), or name it with --registry [APP/]NAME and give REPOSITORY:TAG",
        "credentials_unavailable": "the registry's credentials could not be obtained; check {key} in {config}",
        "credentials_refused": "the registry refused the configured credentials: check {key}.username and {key}.password "
        "(the password comes from {password_source}); they must be able to `docker login {host}`",
        "permission_denied": "the credentials were accepted but may not pull {upstream_repository}: grant that account pull/read access to the repository",
        "realm_not_allowed": "the registry sends clients to a token service on another host; if it is the registry's own, add that host to {key}.auth_hosts",
        "repository_not_found": "repository {upstream_repository} does not exist on {host}{prefix_note}; check the image name{close_repositories}",
        "tag_not_found": "tag {tag} does not exist in {upstream_repository}{close_tags}",
        "manifest_not_found": "no manifest with digest {reference} in {upstream_repository}: the image was deleted or the digest is mistyped",
        "unsupported_manifest": "the registry serves a manifest type container runtimes no longer pull (Docker schema 1?): rebuild and push the image with a current tool",
        "bad_manifest": "the manifest is not valid JSON of a known type: re-push the image",
        "blob_missing": "the manifest references a blob the registry does not have (a broken push or garbage-collected layer): re-push the image",
        "digest_mismatch": "the registry served content whose sha256 does not match its digest: storage corruption or a misbehaving proxy in between; re-push the image",
        "size_mismatch": "the registry served a blob of another size than the manifest says: re-push the image",
        "dns": "host {host} does not resolve: check the url in {key}, and DNS from this machine",
        "connect": "nothing accepts connections at {host}: check the url's host and port in {key}, that the registry is running, and firewalls",
        "tls": "TLS with {host} failed: {tls_advice}",
        "timeout": "{host} did not answer within {timeout} s: check firewalls and proxies, or raise --timeout for a slow registry",
        "protocol": "the connection broke or the answer was not a registry's: is {host} a container registry (OCI distribution API)?",
        "rate_limited": "the registry is rate limiting these credentials; retry after {retry_after} s. In CI, test fewer images at once (--concurrency)",
        "upstream_error": "the registry itself failed (HTTP {status}); retry later, or check its status page",
        "storage_refused": "the registry redirected the blob to a storage host the mirror will not contact; allow it with {key}.redirect_hosts",
    },
    "basic": {},
    "anonymous": {
        "credentials_refused": "the registry wants credentials, and type anonymous sends none: use type basic with a username and password",
        "permission_denied": "{upstream_repository} is not public: use type basic (or the registry's own type) with credentials that may pull it",
    },
    "ecr": {
        "credentials_unavailable": "AWS refused to issue an ECR token: check {key}.access_key_id/secret_access_key (or the role) and {key}.region; "
        "the IAM identity needs ecr:GetAuthorizationToken",
        "credentials_refused": "ECR refused the token: the AWS keys in {key} are invalid or for another account, or {key}.registry_id does not match the host",
        "permission_denied": f"the IAM identity may not pull {{upstream_repository}}: its policy (or the repository policy) must allow {ECR_ACTIONS}",
        "repository_not_found": "ECR has no repository {upstream_repository} in this account and region (names are exact and case-sensitive){close_repositories}",
        "tag_not_found": "ECR repository {upstream_repository} has no tag {tag}{close_tags} (a lifecycle policy may have expired it)",
        "rate_limited": "ECR throttled the requests (API rate quotas per account and region); retry after {retry_after} s or ask AWS for a quota increase",
    },
    "gcr": {
        "credentials_unavailable": "Google refused the service account: check {key}.service_account_json (a key file of an enabled service account)",
        "credentials_refused": "Google refused the credentials: the service account key is revoked or for another project; "
        "with json_key: true the username must be _json_key and the password the whole key JSON",
        "permission_denied": "the service account may not pull {upstream_repository}: grant it roles/artifactregistry.reader "
        "(or roles/storage.objectViewer on the bucket behind gcr.io) in the image's project",
        "repository_not_found": "no image {upstream_repository} in this project: check the project id in the url and the path{close_repositories}",
    },
    "gar": {
        "credentials_unavailable": "Google refused the service account: check {key}.service_account_json (a key file of an enabled service account)",
        "credentials_refused": "Google refused the credentials: the service account key is revoked or for another project; "
        "with json_key: true the username must be _json_key and the password the whole key JSON",
        "permission_denied": "the service account may not pull {upstream_repository}: grant it roles/artifactregistry.reader on the repository or project",
        "repository_not_found": "Artifact Registry has no {upstream_repository}: the url is LOCATION-docker.pkg.dev/PROJECT/REPOSITORY, then the image{close_repositories}",
    },
    "ghcr": {
        "credentials_refused": "GHCR refused the token in {key}.password (from {password_source}): use a personal access token (classic) "
        "with the read:packages scope, or a fine-grained token with package read access; {key}.username is the GitHub user",
        "permission_denied": "the token may not read {upstream_repository}: it needs the read:packages scope and the user access to the package "
        "(GHCR also answers this for packages that do not exist)",
        "repository_not_found": "GHCR has no package {upstream_repository} visible to this token (GHCR hides packages you cannot read){close_repositories}",
        "rate_limited": "GitHub is rate limiting the token; retry after {retry_after} s",
    },
    "dockerhub": {
        "credentials_refused": "Docker Hub refused the credentials: {key}.username is the Docker ID and {key}.password a personal access token "
        "(Account settings > Personal access tokens, read-only is enough), not the account password when 2FA is on",
        "permission_denied": "the Docker ID may not pull {upstream_repository}: private repositories need a member of the owning organization "
        "(Docker Hub also answers this for repositories that do not exist)",
        "repository_not_found": "Docker Hub has no repository {upstream_repository} (official images live under library/){close_repositories}",
        "rate_limited": "Docker Hub's pull rate limit was hit (limits per account and per IP; anonymous pulls have the lowest); "
        "retry after {retry_after} s, authenticate with a paid account's access token, or turn on the mirror's cache",
    },
    "quay": {
        "credentials_refused": "Quay refused the credentials: use a robot account (username ORG+ROBOT and its token as password) from the organization's Robot Accounts",
        "permission_denied": "the robot account has no Read permission on {upstream_repository}: grant it in the repository's settings",
        "repository_not_found": "Quay has no repository {upstream_repository} visible to these credentials{close_repositories}",
    },
    "acr": {
        "credentials_refused": "ACR refused the credentials: use a service principal (application id and secret) or a repository-scoped token; "
        "the admin user must be enabled if you use it",
        "permission_denied": "the service principal may not pull {upstream_repository}: assign it the AcrPull role on the registry "
        "(or a token scope map with content/read)",
        "repository_not_found": "ACR has no repository {upstream_repository}{close_repositories}",
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
    table = HINTS.get(registry_type, {})
    template = table.get(kind) or HINTS["default"].get(kind, "")
    values = _Lenient({k: ("" if v is None else v) for k, v in context.items()})
    return string.Formatter().vformat(template, (), values).strip()


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
