"""What each registry type needs, said before asking for it: one guide per type.

A guide is an explanation (printed first) and the questions to ask, in order. Each question is
one config key of the registry entry; `secret` answers are stored as env:/file: references.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from ..config import RegistryConfig
from ..upstreams.aws import PULL_ACTIONS
from ..upstreams.ecr import EcrUpstream, parse_ecr_host

Answers = dict[str, object]


@dataclass(frozen=True)
class Question:
    key: str  # the registry entry's config key
    prompt: str
    kind: str = "str"  # str | secret | keyfile (a secret read from a file) | bool
    required: bool = True
    default: str | Callable[[Answers], str | None] | None = None
    when: Callable[[Answers], bool] | None = None  # asked only when this holds
    help: str = ""  # one line shown with the question

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def default_for(self, answers: Answers) -> str | None:
        return self.default(answers) if callable(self.default) else self.default

    def applies(self, answers: Answers) -> bool:
        return self.when is None or self.when(answers)


@dataclass(frozen=True)
class Guide:
    type: str
    title: str
    explanation: str
    questions: tuple[Question, ...] = ()
    default_name: str = ""
    extra_flags_only: tuple[Question, ...] = field(default=())  # advanced keys: flags, never asked
    after_save: Callable[[RegistryConfig], str] | None = None  # what to do next, for this registry


def ecr_policy(region: str = "REGION", account: str = "ACCOUNT_ID") -> str:
    """The IAM policy the vendor attaches to the mirror's AWS identity, ready to copy."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AuthMirrorToken", "Effect": "Allow", "Action": PULL_ACTIONS[0], "Resource": "*"},
            {
                "Sid": "AuthMirrorPull",
                "Effect": "Allow",
                "Action": list(PULL_ACTIONS[1:]) + ["ecr:ListImages"],
                "Resource": f"arn:aws:ecr:{region}:{account}:repository/*",
            },
        ],
    }
    return json.dumps(policy, indent=2)


def _ecr_policy_for(registry: RegistryConfig) -> str:
    upstream = EcrUpstream(registry)
    policy = ecr_policy(upstream.aws_settings().region, upstream.registry_id or "ACCOUNT_ID")
    return f"Attach this IAM policy to the mirror's AWS identity (if not done yet):\n{policy}"


def _ecr_region(answers: Answers) -> str | None:
    from urllib.parse import urlsplit

    parsed = parse_ecr_host(urlsplit(str(answers.get("url") or "")).hostname or "")
    return parsed[1] if parsed else None


def _credentials_guide(registry_type: str, title: str, explanation: str, url: Question, username: str, password: str, username_help: str = "", default_name: str = "") -> Guide:
    """A type that pulls with a username and a password or token (most registries)."""
    questions = (url, Question("username", username, help=username_help), Question("password", password, kind="secret"))
    return Guide(registry_type, title, explanation, questions, default_name=default_name or registry_type)


def _google_guide(registry_type: str, title: str, role: str, url: Question) -> Guide:
    """GCR and GAR differ only in their url and the role's scope."""
    return Guide(
        registry_type,
        title,
        "The mirror signs in as a Google service account with its JSON key and mints short-lived access\n"
        "tokens (sent as user oauth2accesstoken); with json_key it sends the key itself as user _json_key\n"
        "(simpler, but the key travels on every token request). The service account needs\n"
        f"{role}\n"
        "Create the key: IAM > Service accounts > Keys > Add key > JSON.",
        (
            url,
            Question("service_account_json", "Path to the service account JSON key file", kind="keyfile"),
            Question("json_key", "Send the key itself as _json_key instead of minting access tokens?", kind="bool", default="no", required=False),
        ),
        default_name=registry_type,
    )


SECRET_FORMS = (
    "Secrets: type the value (stored in a 0600 file next to the config), or give env:NAME / file:PATH "
    "to reference one the mirror's host already has. Nothing you type is echoed."
)

GUIDES: dict[str, Guide] = {
    "ecr": Guide(
        "ecr",
        "Amazon ECR",
        "The mirror asks AWS for a registry token (ecr:GetAuthorizationToken, valid 12 h, renewed\n"
        "automatically) with an AWS identity of yours, and pulls with it. Give it an access key of an\n"
        "IAM user, a role to assume, or leave the key empty to use the mirror host's own AWS identity\n"
        "(environment, profile, IRSA or instance role). Attach this policy to that identity:\n\n"
        + ecr_policy() + "\n\n"
        "(ecr:ListImages is only needed for tag lists.) Create the key: IAM > Users > Security credentials.",
        (
            Question("url", "Registry URL", help="https://<account>.dkr.ecr.<region>.amazonaws.com, optionally with a repository prefix path"),
            Question("region", "AWS region", default=_ecr_region),
            Question("access_key_id", "Access key ID (empty: the host's default AWS identity)", kind="secret", required=False),
            Question("secret_access_key", "Secret access key", kind="secret", when=lambda a: bool(a.get("access_key_id"))),
            Question("role_arn", "Role to assume (empty: none)", required=False, help="arn:aws:iam::<account>:role/<name>, for cross-account access"),
            Question("external_id", "External ID for the role (empty: none)", required=False, when=lambda a: bool(a.get("role_arn"))),
        ),
        default_name="ecr",
        after_save=_ecr_policy_for,
        extra_flags_only=(
            Question("registry_id", "Registry (account) ID", required=False),
            Question("endpoint_url", "ECR API endpoint URL", required=False),
            Question("sts_endpoint_url", "STS endpoint URL", required=False),
        ),
    ),
    "gcr": _google_guide(
        "gcr",
        "Google Container Registry (gcr.io)",
        "roles/artifactregistry.reader on the gcr.io repository (legacy GCR: roles/storage.objectViewer on\n"
        "bucket artifacts.<project>.appspot.com).",
        Question("url", "Registry URL", default="https://gcr.io", help="https://gcr.io/<project> (or us./eu./asia.gcr.io)"),
    ),
    "gar": _google_guide(
        "gar",
        "Google Artifact Registry",
        "roles/artifactregistry.reader on the repository:\n"
        "  gcloud artifacts repositories add-iam-policy-binding REPO --location=REGION \\\n"
        "    --member=serviceAccount:EMAIL --role=roles/artifactregistry.reader",
        Question("url", "Repository URL", help="https://<region>-docker.pkg.dev/<project>/<repository>"),
    ),
    "ghcr": _credentials_guide(
        "ghcr",
        "GitHub Container Registry (ghcr.io)",
        "The mirror pulls with a GitHub account and a classic personal access token that has the\n"
        "read:packages scope (fine-grained tokens do not cover packages). Use a bot account that can\n"
        "read the packages. Create the token: GitHub > Settings > Developer settings > Personal access\n"
        "tokens > Tokens (classic), scope read:packages only.",
        Question("url", "Registry URL", default="https://ghcr.io", help="https://ghcr.io/<owner> makes <owner>/ a prefix"),
        "GitHub username", "Personal access token (read:packages)", "the account that owns the token",
    ),
    "dockerhub": _credentials_guide(
        "dockerhub",
        "Docker Hub",
        "The mirror pulls with your Docker ID and a personal access token (Account settings > Personal\n"
        "access tokens > Generate, access: Read-only). Docker Hub rate-limits pulls per account; the\n"
        "mirror records ratelimit-limit/remaining in every pull event and passes 429 + Retry-After on.\n"
        "Official images (nginx) are library/nginx upstream: the mirror adds library/ for you.",
        Question("url", "Registry URL", default="https://registry-1.docker.io"),
        "Docker ID", "Personal access token (Read-only)", "not the email address",
    ),
    "quay": _credentials_guide(
        "quay",
        "Quay.io",
        "The mirror pulls with a robot account: Organization > Robot accounts > Create, then give it Read\n"
        "permission on the repositories. Its name is <organization>+<robot>; its token is the password.",
        Question("url", "Registry URL", default="https://quay.io"),
        "Robot account (<organization>+<robot>)", "Robot token",
    ),
    "acr": _credentials_guide(
        "acr",
        "Azure Container Registry",
        "The mirror pulls with either a service principal (username: application/client ID, password:\n"
        "a client secret) that has the AcrPull role on the registry:\n"
        "  az role assignment create --assignee APP_ID --role AcrPull --scope REGISTRY_RESOURCE_ID\n"
        "or a repository-scoped token (username: token name, password: one of its passwords) whose scope\n"
        "map allows content/read (and metadata/read for tag lists).",
        Question("url", "Login server URL", help="https://<name>.azurecr.io"),
        "Application (client) ID or token name", "Client secret or token password",
    ),
    "basic": _credentials_guide(
        "basic",
        "Distribution-compatible registry (Harbor, GitLab, Nexus, Artifactory, docker-registry, ...)",
        "The mirror pulls with a username and password (or token) of an account that may pull the\n"
        "images; it works whether the registry takes Basic auth or answers with a Bearer token challenge.\n"
        "Prefer a read-only robot/service account.",
        Question("url", "Registry URL"),
        "Username", "Password or token", default_name="vendor",
    ),
    "anonymous": Guide(
        "anonymous",
        "Public registry (no credentials)",
        "The mirror pulls without credentials: use it for public images you still want behind licenses.",
        (Question("url", "Registry URL"),),
        default_name="public",
    ),
}


def all_questions() -> list[tuple[Question, list[str]]]:
    """Every question of every guide, once per key, with the types that ask it (for the flags)."""
    seen: dict[str, tuple[Question, list[str]]] = {}
    for guide in GUIDES.values():
        for question in guide.questions + guide.extra_flags_only:
            seen.setdefault(question.key, (question, []))[1].append(guide.type)
    return list(seen.values())
