"""Chart rendering: the `helm template` path, Helm's engine without the program, and neither."""

import json
import sys

import pytest

from authmirror import helmchart
from authmirror.cli.main import main
from authmirror.helmchart import HelmError, merge_values, render_chart
from authmirror.manifests import images_in_manifests
from tests.support.helmcli import write_chart, write_helm_program

IMAGES = {"init": "reg.example.com/acme/init:1.0", "app": "reg.example.com/acme/app:1.0", "backup": "reg.example.com/acme/backup:2.0"}


@pytest.fixture
def chart(tmp_path):
    return write_chart(tmp_path / "chart", IMAGES)


@pytest.fixture
def no_helm_program(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def test_merge_values_follows_helm():
    assert merge_values({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == {"a": {"b": 1, "c": 3}, "d": [2]}


def test_helm_program_is_run_with_release_chart_and_values(chart, tmp_path, monkeypatch):
    log = tmp_path / "helm-args.jsonl"
    write_helm_program(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    values = tmp_path / "prod.yaml"
    values.write_text("images: {app: reg.example.com/acme/app:1.1}\n")
    text = render_chart(str(chart), [str(values)], ["images.backup=reg.example.com/acme/backup:2.1"])
    assert json.loads(log.read_text()) == [
        "template", helmchart.RELEASE_NAME, str(chart), "--values", str(values), "--set", "images.backup=reg.example.com/acme/backup:2.1"
    ]
    assert [f.image for f in images_in_manifests(text)] == ["reg.example.com/acme/backup:2.1", "reg.example.com/acme/init:1.0", "reg.example.com/acme/app:1.1"]


def test_helm_program_failure_carries_helms_message(tmp_path, monkeypatch):
    write_helm_program(tmp_path / "bin", tmp_path / "log")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    broken = tmp_path / "broken"
    (broken / "templates").mkdir(parents=True)
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (broken / "templates" / "x.yaml").write_text("kind: Pod\nimage: {{ .Values.nope.deeper }}\n")
    with pytest.raises(HelmError, match=r"(?s)helm template .*broken failed \(exit 1\): Error: .*nil pointer"):
        render_chart(str(broken))


def test_without_the_program_helms_engine_renders_local_charts(chart, tmp_path, no_helm_program):
    values = tmp_path / "v.yaml"
    values.write_text("images: {init: reg.example.com/acme/init:1.5}\n")
    found = images_in_manifests(render_chart(str(chart), [str(values)]))
    assert {f.image for f in found} == {"reg.example.com/acme/init:1.5", IMAGES["app"], IMAGES["backup"]}
    with pytest.raises(HelmError, match="--set needs the helm program"):
        render_chart(str(chart), [], ["a=b"])
    with pytest.raises(HelmError, match="remote charts need the helm program"):
        render_chart("oci://registry.example.com/charts/acme")


def test_neither_helm_nor_its_engine_says_how_to_get_one(chart, no_helm_program, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "helm_python", None)  # import now fails: not installed
    with pytest.raises(HelmError) as raised:
        render_chart(str(chart))
    message = str(raised.value)
    assert "helm is not installed" in message and "https://helm.sh/docs/intro/install/" in message
    assert "authmirror[helm]" in message and f"helm template {chart} | authmirror images --from-manifests -" in message
    assert main(["images", "--from-helm", str(chart)]) == 2
    assert "helm is not installed" in capsys.readouterr().err


def test_images_command_lists_a_charts_images(chart, no_helm_program, capsys):
    assert main(["images", "--from-helm", str(chart)]) == 0
    assert capsys.readouterr().out.split() == [IMAGES["backup"], IMAGES["init"], IMAGES["app"]]
    assert main(["images", "--from-helm", str(chart), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["images"]
    assert listed[0] == {"image": IMAGES["backup"], "uses": [f"CronJob/{helmchart.RELEASE_NAME}-backup containers[backup]"]}
