"""Slicer loads RibFracSeg.py at start-up, before any requirement is installed: loading it (and the
Logic) must need only what every Slicer 5.6+ ships (slicer, vtk, numpy, SimpleITK)."""

from __future__ import annotations

import subprocess
import sys

from slicer_scene import MODULE_DIR, REPO, add_module_path

add_module_path()

from RibFracSegLogicLib.dependencies import REQUIREMENTS, SLICER_OWNED, read_requirements, requirement_name  # noqa: E402

NOT_IN_SLICER = ("torch", "scipy", "skimage", "tqdm", "monai", "qt", "ctk")


def test_module_file_loads_without_torch_scipy_skimage_or_the_gui():
    blocker = "; ".join(f"sys.modules[{name!r}] = None" for name in NOT_IN_SLICER)
    code = (f"import sys; {blocker}; sys.path[:0] = [{str(MODULE_DIR)!r}, {str(REPO)!r}]; "
            "import RibFracSeg; logic = RibFracSeg.RibFracSegLogic(scene=None); "
            "print('loaded', RibFracSeg.GUI_AVAILABLE, sorted(m for m in sys.modules if m in "
            f"{NOT_IN_SLICER!r} and sys.modules[m] is not None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("loaded False []")


def test_requirements_never_name_slicers_own_packages():
    raw = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()]
    names = [requirement_name(line).lower() for line in raw if line]
    assert names == ["scipy", "scikit-image"] == [requirement_name(r) for r in read_requirements()]
    assert not set(names) & set(SLICER_OWNED) and "torch" not in names
    assert requirement_name("scikit-image>=0.21  # x") == "scikit-image"


def test_cmake_lists_every_module_file_and_resource():
    """slicerMacroBuildScriptedModule installs only what is listed: a forgotten file breaks the extension."""
    import re

    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"\$\{MODULE_NAME\}(LogicLib/\w+\.py)", cmake))
    on_disk = {f"LogicLib/{p.name}" for p in (MODULE_DIR / "RibFracSegLogicLib").glob("*.py")}
    assert listed == on_disk
    for resource in re.findall(r"(Resources/\S+)", cmake.split("MODULE_PYTHON_RESOURCES", 1)[1].split(")", 1)[0]):
        assert (MODULE_DIR / resource.replace("${MODULE_NAME}", "RibFracSeg")).is_file(), resource


def test_nothing_slicer_runs_needs_tqdm():
    """Only the command line draws progress bars: the module, its Logic, the worker and the library code
    they reach import without tqdm, and no file outside RibFracSegLib/cli imports it but the one tqdm
    adapter (RibFracSegLib/progress.py, which imports it only when a bar is made)."""
    import ast

    importers = set()
    for path in [*REPO.joinpath("RibFracSegLib").rglob("*.py"), *MODULE_DIR.rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "tqdm" for n in names):
                importers.add(path.relative_to(REPO).as_posix())
    assert {p.rsplit("/", 1)[0] for p in importers if p != "RibFracSegLib/progress.py"} == {"RibFracSegLib/cli"}
    modules = [f"RibFracSegLogicLib.{p.stem}" for p in (MODULE_DIR / "RibFracSegLogicLib").glob("*.py")]
    modules += ["RibFracSegLib.inference", "RibFracSegLib.l3", "RibFracSegLib.l3.overlay", "RibFracSegLib.export"]
    code = (f"import sys, importlib; sys.modules['tqdm'] = None; sys.path[:0] = [{str(MODULE_DIR)!r}, {str(REPO)!r}]; "
            f"[importlib.import_module(m) for m in {sorted(modules)!r}]; import RibFracSeg; print('ok', len({modules!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", str(len(modules))]


def test_reload_forgets_the_modules_own_packages_and_nothing_else():
    """The Widget's Reload drops RibFracSegLogicLib/RibFracSegLib so that Slicer's reload imports them afresh."""
    code = (f"import sys; sys.path[:0] = [{str(MODULE_DIR)!r}, {str(REPO)!r}]; import numpy, slicer; "
            "import RibFracSeg, RibFracSegLogicLib.panel as old; from RibFracSegLogicLib.reload import forget_own_modules; "
            "dropped = forget_own_modules(); import RibFracSegLogicLib.panel as new; "
            "print(new is not old, 'RibFracSegLogicLib.panel' in dropped, 'RibFracSegLib.defaults' in dropped, "
            "any(not n.startswith(('RibFracSegLogicLib', 'RibFracSegLib')) for n in dropped), "
            "'numpy' in sys.modules and 'slicer' in sys.modules and 'RibFracSeg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "True", "False", "True"]


def test_the_path_fields_are_bound_by_hand_to_their_line_edits_text():
    """The Model/L3-model fields are text parameters bound by hand (panel.PATH_FIELDS says why): not wrapper
    fields (its path connector makes "" a Path(".") and follows currentPathChanged, which CTK never emits for
    "" or a name outside the field's filter), no SlicerParameterName, and the Widget follows the field's line
    edit's textChanged, which reports every text."""
    import ast
    import xml.etree.ElementTree as ET

    from RibFracSegLogicLib.panel import PATH_FIELDS

    source = (MODULE_DIR / "RibFracSeg.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "RibFracSegParameterNode")
    wrapper_fields = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    assert "inputVolume" in wrapper_fields and not wrapper_fields & set(PATH_FIELDS)
    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "RibFracSeg.ui")
    for name in ("checkpointPathLineEdit", "l3CheckpointPathLineEdit"):
        edit = next(w for w in ui.iter("widget") if w.get("name") == name)
        assert [p.get("name") for p in edit.iter("property") if p.get("name") == "SlicerParameterName"] == []
    assert 'lineEdit.connect("textChanged(QString)"' in source and '"currentPathChanged(' not in source


# A Slicer module each of these names comes from (its node classes, logic or widgets)
MODULE_OF = {"vtkMRMLSegmentation": "Segmentations", "qMRMLSegmentation": "Segmentations",
             "vtkSlicerSegmentations": "Segmentations", "vtkMRMLMarkups": "Markups", "vtkSlicerMarkups": "Markups",
             "vtkMRMLTable": "Tables", "qMRMLTable": "Tables", "vtkSlicerTerminologies": "Terminologies",
             "modules.terminologies": "Terminologies", "vtkMRMLSubjectHierarchy": "SubjectHierarchy"}


def test_the_module_depends_on_every_slicer_module_it_uses():
    """Slicer loads a module's dependencies first and refuses the module without them; `dependencies = []`
    let it load where Segmentations/Markups/... were disabled, and fail at the first run instead."""
    import ast

    tree = ast.parse((MODULE_DIR / "RibFracSeg.py").read_text(encoding="utf-8"))
    declared = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", "") == "MODULE_DEPENDENCIES" for t in n.targets))
    sources = [p.read_text(encoding="utf-8") for p in MODULE_DIR.rglob("*") if p.suffix in (".py", ".ui")]
    used = {module for marker, module in MODULE_OF.items() if any(marker in text for text in sources)}
    assert used == {"Segmentations", "Markups", "Tables", "Terminologies", "SubjectHierarchy"}
    assert sorted(declared) == sorted(used)
    assert "self.parent.dependencies = MODULE_DEPENDENCIES" in (MODULE_DIR / "RibFracSeg.py").read_text(encoding="utf-8")
