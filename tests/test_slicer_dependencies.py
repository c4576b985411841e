"""Packages inside Slicer: checked before every run, named when missing, installed only after a yes."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest

from slicer_cases import probe_case
from slicer_scene import REPO, make_scene

from RibFracSegLogicLib import dependencies  # noqa: E402
from RibFracSegLogicLib.dependencies import MissingRequirements  # noqa: E402

ABSENT = "ribfracseg-no-such-package>=1.0"


@pytest.fixture
def requirements_with_a_missing_package(tmp_path, monkeypatch):
    path = tmp_path / "requirements.txt"
    path.write_text(f"# test\nscipy>=1.10\nnumpy>=1  # Slicer's own: ignored\n{ABSENT}\n")
    monkeypatch.setattr(dependencies, "REQUIREMENTS", path)
    return path


def test_missing_requirements_checks_presence_and_version():
    scipy = importlib.metadata.version("scipy")
    wanted = ["scipy>=1.10", ABSENT, "scipy>=999", f"scipy=={scipy}", "scikit-image>=0.21"]
    assert dependencies.missing_requirements(wanted) == [ABSENT, "scipy>=999"]
    assert dependencies.read_requirements() == ["scipy>=1.10", "scikit-image>=0.21"]
    assert dependencies.missing_requirements() == []  # this test environment has everything


def test_the_message_names_each_missing_package_and_the_way_to_get_it():
    with pytest.raises(MissingRequirements) as caught:
        dependencies.check_requirements([ABSENT, "scipy>=999"])
    assert caught.value.missing == [ABSENT, "scipy>=999"]
    text = str(caught.value)
    assert f"not installed: {ABSENT}, scipy>=999." in text
    assert f"slicer.util.pip_install('{ABSENT} scipy>=999')" in text and "PyTorch" not in text
    torch_text = dependencies.missing_message(["torch"])
    assert "'PyTorch' extension" in torch_text and "pip_install" not in torch_text


def test_console_process_checks_requirements_first_and_changes_nothing(requirements_with_a_missing_package, tmp_path):
    case = probe_case(tmp_path)
    holder, logic, volume, checkpoint = case.holder, case.logic, case.volume, case.checkpoint
    before = holder.node_ids()
    for start in (lambda: logic.process(volume, checkpoint=checkpoint, device="cpu"),
                  lambda: logic.start_background(volume, logic.options(checkpoint, device="cpu"))):
        with pytest.raises(MissingRequirements, match="ribfracseg-no-such-package>=1.0") as caught:
            start()
        assert caught.value.missing == [ABSENT]
    assert holder.node_ids() == before


def test_self_test_script_skips_naming_what_is_missing(requirements_with_a_missing_package, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("RibFracSegSelfTest", REPO / "Testing" / "Python" / "RibFracSegSelfTest.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.run(make_scene().scene, tmp_path, quick=True) == script.SKIPPED == 2
    assert f"self-test skipped: RibFracSeg needs Python packages that are not installed: {ABSENT}." in capsys.readouterr().out


def test_the_panel_asks_before_installing_and_a_no_installs_nothing(requirements_with_a_missing_package, monkeypatch):
    installs, questions = [], []
    monkeypatch.setattr(dependencies, "pip_install", lambda reqs, constraints: installs.append(reqs))

    def decline(question: str) -> bool:
        questions.append(question)
        return False

    with pytest.raises(RuntimeError, match="installation was declined"):
        dependencies.ensure_dependencies(ask=decline)
    assert installs == [] and len(questions) == 1
    assert f"  - {ABSENT}\n" in questions[0] and "scipy" not in questions[0]


def test_nothing_missing_means_no_question_and_no_install(monkeypatch):
    installs, questions = [], []
    monkeypatch.setattr(dependencies, "pip_install", lambda reqs, constraints: installs.append(reqs))
    dependencies.ensure_dependencies(ask=lambda q: questions.append(q) or True)
    assert installs == [] and questions == []


def test_a_yes_installs_with_slicers_packages_pinned(requirements_with_a_missing_package, monkeypatch):
    seen = {}

    def fake_pip(reqs, constraints):  # stands in for Slicer's pip: records what it was given
        seen["reqs"], seen["constraints"] = reqs, constraints.read_text(encoding="utf-8").split()

    monkeypatch.setattr(dependencies, "pip_install", fake_pip)
    with pytest.raises(MissingRequirements):  # the fake pip installed nothing: the re-check says so
        dependencies.ensure_dependencies(ask=lambda q: True)
    assert seen["reqs"] == [ABSENT]
    versions = {name: importlib.metadata.version(name) for name in ("numpy", "SimpleITK", "torch")}
    assert {f"{n}=={v}".lower() for n, v in versions.items()} <= {c.lower() for c in seen["constraints"]}
    assert not any(c.lower().startswith(("scipy", "scikit")) for c in seen["constraints"])
