"""`gar`: Google Artifact Registry Docker repositories, `https://<region>-docker.pkg.dev/<project>/<repository>`.

Quirks:
- The host is per region (`europe-west1-docker.pkg.dev`, `us-docker.pkg.dev`, ...); there is no default url.
- Image names upstream are `<project>/<repository>/<image>`: put project and repository in the url
  (a url path is a repository prefix) so customers pull `.../proxy/<app>/<name>/<image>:<tag>`.
- The service account needs `roles/artifactregistry.reader` on the repository (or the project).
- Authentication: see `google.py` (access tokens as `oauth2accesstoken`, or `_json_key`).
"""

from __future__ import annotations

from .google import GoogleUpstream


class GarUpstream(GoogleUpstream):
    TYPE = "gar"
    LABEL = "Google Artifact Registry"
