"""`gcr`: Google Container Registry hosts (gcr.io, us.gcr.io, eu.gcr.io, asia.gcr.io).

Quirks:
- gcr.io is now served by Artifact Registry ("gcr.io repositories"): the service account needs
  `roles/artifactregistry.reader`; on a legacy GCR project, `roles/storage.objectViewer` on the
  bucket `artifacts.<project>.appspot.com` (`<region>.artifacts.<project>.appspot.com` for us/eu/asia).
- Images live under the project: put it in the url (`https://gcr.io/<project>`) so image paths
  through the mirror omit it, or leave it in each repository name.
- Authentication: see `google.py` (access tokens as `oauth2accesstoken`, or `_json_key`).
"""

from __future__ import annotations

from .google import GoogleUpstream


class GcrUpstream(GoogleUpstream):
    TYPE = "gcr"
    LABEL = "Google Container Registry"
    DEFAULT_URL = "https://gcr.io"
