"""Each package has one version source, and its changelog and sibling pins agree with it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["stun", "turn", "mdns", "ice"]


def about_version(folder: str) -> str:
    text = (ROOT / "packages" / folder / "src" / "aioice" / folder / "__about__.py").read_text()
    match = re.fullmatch(r'__version__ = "([^"]+)"\n', text)
    assert match, f"{folder}/__about__.py must hold only the version"
    return match.group(1)


def project(folder: str) -> dict[str, object]:
    data = tomllib.loads((ROOT / "packages" / folder / "pyproject.toml").read_text())
    table = data["project"]
    assert isinstance(table, dict)
    return table


@pytest.mark.parametrize("folder", FOLDERS)
def test_changelog_top_release_is_the_version(folder: str) -> None:
    changelog = (ROOT / "packages" / folder / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (\S+)", changelog, re.MULTILINE)
    releases = [h for h in headings if h != "Unreleased"]
    assert releases, f"{folder}/CHANGELOG.md has no release heading"
    assert releases[0] == about_version(folder)


@pytest.mark.parametrize("folder", FOLDERS)
def test_version_is_dynamic_from_about(folder: str) -> None:
    assert project(folder)["dynamic"] == ["version"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_sibling_pins_admit_the_sibling_versions(folder: str) -> None:
    names = {project(f)["name"]: f for f in FOLDERS}
    dependencies = project(folder)["dependencies"]
    assert isinstance(dependencies, list)
    for line in dependencies:
        requirement = Requirement(line)
        if requirement.name in names:
            version = Version(about_version(names[requirement.name]))
            assert version in requirement.specifier, f"{line} excludes {version}"


def test_runtime_versions_match() -> None:
    import aioice
    import aioice.mdns
    import aioice.stun
    import aioice.turn

    assert aioice.stun.__version__ == about_version("stun")
    assert aioice.turn.__version__ == about_version("turn")
    assert aioice.mdns.__version__ == about_version("mdns")
    assert aioice.__version__ == about_version("ice")
