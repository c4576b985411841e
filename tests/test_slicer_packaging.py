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
    assert TOP.startswith("cmake_minimum_required(VERSION 3.28.0...3.28.0 FATAL_ERROR)\n")  # current template


def test_icon_and_screenshot_urls_point_at_committed_pictures():
    urls = [cmake_set("EXTENSION_ICONURL"), *cmake_set("EXTENSION_SCREENSHOTURLS").split()]
    assert len(urls) == 2
    for url in urls:
        assert url.startswith(RAW_PREFIX), url
        picture = REPO / url[len(RAW_PREFIX):]
        assert picture.is_file() and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
        assert picture.stat().st_size < 500_000, url


def test_shipped_models_are_installed_with_the_extension():
    install = re.search(r"install\(FILES \$\{_models\}\s+DESTINATION (\S+)", MODULE)
    assert install and install.group(1) == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/RibFracSegLib/models"
    assert "COMPONENT RuntimeLibraries" in MODULE.split("install(FILES ${_models}", 1)[1].split(")", 1)[0]
    assert sorted(p.name for p in (REPO / "RibFracSegLib" / "models").glob("*.pt")) == ["l3_default.pt", "ribfrac_default.pt"]


def test_self_test_registration():
    call = re.search(r"slicer_add_python_test\((.*?)\)", TESTING, re.S).group(1)
    args = shlex.split(call)
    assert args == ["SCRIPT", "RibFracSegSelfTest.py", "SLICER_ARGS", "--no-main-window"]  # the macro adds module paths
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
