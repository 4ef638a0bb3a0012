"""The shipped example config works as documented (only its ports are moved to free ones)."""

import shutil

import pytest
import yaml

from tests.support import processes

pytestmark = pytest.mark.e2e


def test_example_config_serves_a_skopeo_pull(tmp_path, built):
    registry = processes.start_registry(tmp_path / "registry", users={"vendor": "example-vendor-pw"})
    try:
        processes.push(built.single.layout, "1.0", registry, "vendor/app")
        examples = processes.REPO_ROOT / "examples"
        work = tmp_path / "examples"
        work.mkdir()
        shutil.copy(examples / "licenses.yaml", work / "licenses.yaml")
        config = yaml.safe_load((examples / "authmirror.yaml").read_text())
        port = processes.free_port()
        config["listen"] = f"127.0.0.1:{port}"
        config["public_url"] = f"http://127.0.0.1:{port}"
        config["apps"]["acme"]["registries"][0]["url"] = registry.url
        (work / "authmirror.yaml").write_text(yaml.safe_dump(config))
        mirror = processes.start_mirror(work, work / "authmirror.yaml", port, env={"VENDOR_USER": "vendor", "VENDOR_PASS": "example-vendor-pw"})
        try:
            license = yaml.safe_load((examples / "licenses.yaml").read_text())["licenses"][0]["id"]
            processes.clear_skopeo_cache()
            processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"customer:{license}", f"docker://127.0.0.1:{port}/proxy/acme/vendor/vendor/app:1.0", f"oci:{tmp_path}/out:1.0")
            processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"customer:{license}", f"docker://localhost:{port}/vendor/vendor/app:1.0", f"oci:{tmp_path}/out2:1.0")
            assert any(e["action"] == "blob" and e["status"] == 200 for e in mirror.pull_events())
        finally:
            mirror.stop()
    finally:
        registry.stop()
