"""What the extension build and the Slicer ExtensionsIndex read: checked as the tools will read it."""

from __future__ import annotations

import json
import re
import shlex

from slicer_scene import MODULE_DIR, REPO

TOP = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
MODULE = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
TESTING = (REPO / "Testing" / "Python" / "CMakeLists.txt").read_text(encoding="utf-8")
RAW_PREFIX = "https://raw.githubusercontent.com/ribfracseg/RibFracSeg/main/"
# Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json: "required" and "properties"
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
CATALOG_PROPERTIES = CATALOG_REQUIRED | {"scm_revision", "scm_type", "build_dependencies", "dicom_support_rule",
                                         "build_subdirectory", "enabled", "tier"}


def cmake_set(name: str) -> str:
    """The quoted value of set(NAME "value") in the top-level CMakeLists.txt."""
    return re.search(rf'^set\({name} "([^"]*)"\)', TOP, re.M).group(1)


def test_extension_metadata_survives_cmakes_list_splitting():
    assert ";" not in cmake_set("EXTENSION_DESCRIPTION") and len(cmake_set("EXTENSION_DESCRIPTION")) > 80


def test_cmake_minimum_is_the_oldest_slicer_we_support():
    """README: Slicer 5.6 or newer. Slicer's extension template asks 3.16.3...3.19.7 in 5.6/5.8 and
    3.20.6...3.22.6 in 5.10 (Utilities/Templates/Extensions/Default/CMakeLists.txt); 3.28 is main's. The
    minimum must admit the oldest, the maximum keeps main's policies where CMake is new enough."""
    found = re.match(r"cmake_minimum_required\(VERSION (\S+)\.\.\.(\S+) FATAL_ERROR\)\n", TOP)
    version = [tuple(int(x) for x in v.split(".")) for v in found.groups()]
    assert version[0] <= (3, 16, 3) and version[1] == (3, 28, 0)
    assert "Slicer 5.6 or newer" in (REPO / "README.md").read_text(encoding="utf-8")


def test_icon_and_screenshot_urls_point_at_committed_pictures():
    urls = [cmake_set("EXTENSION_ICONURL"), *cmake_set("EXTENSION_SCREENSHOTURLS").split()]
    assert len(urls) == 2
    for url in urls:
        assert url.startswith(RAW_PREFIX), url
        picture = REPO / url[len(RAW_PREFIX):]
        assert picture.is_file() and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
        assert picture.stat().st_size < 500_000, url


def test_shipped_models_are_copied_once_into_the_folder_slicer_installs():
    """slicerMacroBuildScriptedModule installs the whole build-tree folder of scripted modules
    (ctkMacroCompilePythonScript's install(DIRECTORY)): the models are copied there, next to the library,
    and installed with it; an install() of our own would copy them a second time."""
    copy = re.search(r"configure_file\(\$\{_model\} (\S+) COPYONLY\)", MODULE)
    assert copy and copy.group(1) == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/RibFracSegLib/models/${_name}"
    assert "install(" not in "\n".join(line.split("#", 1)[0] for line in MODULE.splitlines())
    assert sorted(p.name for p in (REPO / "RibFracSegLib" / "models").glob("*.pt")) == ["l3_default.pt", "ribfrac_ct.pt",
                                                                             "ribfrac_default.pt"]


def test_self_test_registration():
    call = re.search(r"slicer_add_python_test\((.*?)\)", TESTING, re.S).group(1)
    args = shlex.split(call)
    # the macro adds the build tree's module paths; --installed: test that copy, the one Slicer loaded
    assert args == ["SCRIPT", "RibFracSegSelfTest.py", "SLICER_ARGS", "--no-main-window", "SCRIPT_ARGS", "--installed"]
    assert re.search(r"set_tests_properties\(py_RibFracSegSelfTest PROPERTIES SKIP_RETURN_CODE 2\)", TESTING)
    script = (REPO / "Testing" / "Python" / "RibFracSegSelfTest.py").read_text(encoding="utf-8")
    assert "SKIPPED = 2" in script and "missing_requirements()" in script


def test_extensions_index_entry_matches_the_schema_and_the_cmake_metadata():
    entry = json.loads((REPO / "Resources" / "ExtensionsIndex" / "RibFracSeg.json").read_text(encoding="utf-8"))
    assert CATALOG_REQUIRED <= set(entry) <= CATALOG_PROPERTIES
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == cmake_set("EXTENSION_CATEGORY")
    assert entry["scm_url"] == cmake_set("EXTENSION_HOMEPAGE")
    assert entry["build_dependencies"] == cmake_set("EXTENSION_DEPENDS").split()
    assert 1 <= entry["tier"] <= 5


def test_a_skipped_module_test_is_reported_skipped_not_passed():
    """Run the module's test as slicer.testing.runUnitTest does (TextTestRunner(verbosity=2), pass =
    wasSuccessful()) with a requirement missing: the runner calls it a success, so CTest must match the
    skip line in the output (SKIP_REGULAR_EXPRESSION of py_RibFracSeg)."""
    import subprocess
    import sys

    regex = re.search(r'set_tests_properties\(py_\$\{MODULE_NAME\} PROPERTIES SKIP_REGULAR_EXPRESSION "([^"]+)"\)',
                      MODULE).group(1)
    code = ("import sys, unittest, slicer; slicer.mrmlScene = slicer.vtkMRMLScene(); "
            f"sys.path[:0] = [{str(MODULE_DIR)!r}, {str(REPO)!r}]; "
            "import RibFracSegLogicLib.dependencies as d; d.missing_requirements = lambda: ['torch>=2.1']; "
            "result = unittest.TextTestRunner(verbosity=2).run(unittest.TestLoader().loadTestsFromName('RibFracSeg')); "
            "print('successful', result.wasSuccessful(), 'skipped', len(result.skipped))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    output = out.stdout + out.stderr
    assert "successful True skipped 1" in output, output[-2000:]  # what runUnitTest would call a pass
    assert re.search(regex, output) and "torch>=2.1" in output
