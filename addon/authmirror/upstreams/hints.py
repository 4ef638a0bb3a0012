"""What to do about a failure, per registry type: one concrete hint for each kind of failure.

Used by `authmirror config check` and `authmirror registry add` (and reusable by `registry test`):
`failure_kind(error)` sorts an error into a kind, `hint(type, kind)` says what to fix.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError, RegistryError

log = logging.getLogger("authmirror.upstream")

# Kinds of failure, in the order a user would debug them.
KINDS = ("config", "unreachable", "timeout", "realm", "credentials", "permission", "not_found", "rate_limit", "upstream_error")

_ECR_POLICY = "ecr:GetAuthorizationToken (Resource \"*\") and ecr:BatchGetImage, ecr:GetDownloadUrlForLayer, ecr:BatchCheckLayerAvailability"

HINTS: dict[str, dict[str, str]] = {
    "*": {
        "unreachable": "check the url and that the mirror's host can reach it (DNS, firewall, egress proxy); https needs a certificate the mirror trusts",
        "timeout": "the registry did not answer in time: check the network path from the mirror's host",
        "realm": "the registry sends its token requests to another host; if that host belongs to the registry, add it to auth_hosts",
        "credentials": "check username and password: try `docker login` to the registry with them",
        "permission": "the credentials work but may not pull: grant them read/pull access to the repositories",
        "not_found": "the repository does not exist upstream or the credentials cannot see it",
        "rate_limit": "the registry is rate limiting the mirror: wait (Retry-After) or raise the account's limits",
        "upstream_error": "the registry itself failed: try again later and check its status page",
        "config": "fix the key named in the message; `authmirror registry add TYPE` explains what each type needs",
    },
    "ecr": {
        "unreachable": "the mirror must reach the ECR API (api.ecr.<region>.amazonaws.com, or endpoint_url) and the registry host; check egress rules and VPC endpoints (ecr.api, ecr.dkr, s3)",
        "credentials": "AWS rejected the credentials: check access_key_id/secret_access_key (IAM > Users > Security credentials); with role_arn, that the role's trust policy lets them assume it",
        "permission": f"attach an IAM policy allowing {_ECR_POLICY} on the repositories (`authmirror registry add ecr --explain` prints it)",
        "not_found": "check the repository name (ECR names are the full path) and that registry_id/region point at the account holding it",
    },
    "gcr": {
        "credentials": "Google refused the service account key: it may be deleted or disabled; create a new JSON key (IAM > Service accounts > Keys > Add key)",
        "permission": "grant the service account roles/artifactregistry.reader on the gcr.io repository (legacy GCR: roles/storage.objectViewer on bucket artifacts.<project>.appspot.com)",
        "not_found": "images live under the project: https://gcr.io/<project> as url, or <project>/<image> as repository",
    },
    "gar": {
        "credentials": "Google refused the service account key: it may be deleted or disabled; create a new JSON key (IAM > Service accounts > Keys > Add key)",
        "permission": "grant the service account roles/artifactregistry.reader on the repository: gcloud artifacts repositories add-iam-policy-binding REPO --location=REGION --member=serviceAccount:EMAIL --role=roles/artifactregistry.reader",
        "not_found": "the url should be https://<region>-docker.pkg.dev/<project>/<repository>; check region, project and repository",
    },
    "ghcr": {
        "credentials": "use a classic personal access token with the read:packages scope, and the GitHub username that owns it",
        "permission": "the token's account needs read access to the package (package settings > Manage access, or org membership)",
        "not_found": "GHCR answers 'not found' for packages the account cannot see: check the owner/image name and the package's access settings",
    },
    "dockerhub": {
        "credentials": "use your Docker ID (not the email) and a personal access token (Account settings > Personal access tokens, Read-only)",
        "permission": "the account must be a member of the organization/team that can read the private repository",
        "not_found": "check namespace/repository; official images are library/<name> (the mirror adds library/ for one-part names)",
        "rate_limit": "Docker Hub limits pulls per account: wait for the window in ratelimit-remaining (see pull events) or use a paid plan",
    },
    "quay": {
        "credentials": "username is the robot's full name <organization>+<robot>, password its token (Organization > Robot accounts)",
        "permission": "give the robot account Read permission on the repository (or a default permission for the organization)",
    },
    "acr": {
        "credentials": "service principal: username = application (client) ID, password = a client secret that has not expired; repository-scoped token: token name + one of its passwords",
        "permission": "assign AcrPull to the service principal (az role assignment create --assignee APP_ID --role AcrPull --scope REGISTRY_RESOURCE_ID), or add content/read to the token's scope map",
        "not_found": "check the repository name and, for a repository-scoped token, that its scope map covers this repository",
    },
    "basic": {},
    "anonymous": {
        "credentials": "the registry wants credentials: use type basic (or the registry's own type) with a username and password",
    },
}


def failure_kind(error: Exception) -> str:
    """Which kind of failure an error from a check or a pull is."""
    if isinstance(error, ConfigError):
        return "config"
    if not isinstance(error, RegistryError):
        return "upstream_error"
    message = error.message.lower()
    if error.code == "UNAUTHORIZED":
        return "credentials"
    if error.code == "DENIED":
        return "permission"
    if error.code == "TOOMANYREQUESTS":
        return "rate_limit"
    if error.code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"):
        return "not_found"
    if "token realm" in message:
        return "realm"
    if error.status == 504 or "in time" in message:
        return "timeout"
    if "could not" in message or "unreachable" in message or "connection refused" in message:
        return "unreachable"
    return "upstream_error"


def hint(registry_type: str, kind: str) -> str:
    return HINTS.get(registry_type, {}).get(kind) or HINTS["*"].get(kind, "")


def hint_for(registry_type: str, error: Exception) -> str:
    return hint(registry_type, failure_kind(error))


def log_refusal(registry_type: str, registry_name: str, status: int, request_id: str) -> None:
    """The upstream refused the vendor's credentials on a pull: tell the vendor (in the mirror's log)
    what to fix; the customer's answer stays generic."""
    kind = "credentials" if status == 401 else "permission"
    what = "refused the vendor's credentials" if status == 401 else "denied the vendor's credentials access"
    log.warning("%s: upstream registry '%s' %s (HTTP %d); hint: %s", request_id, registry_name, what, status, hint(registry_type, kind))


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
    return HINTS["*"]["config"]
