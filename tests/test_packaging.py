"""The four distributions build as designed (DESIGN.md §2.2, §2.7).

- no file is in two wheels;
- ``aioice/__init__.py`` is only in the ``aioice`` wheel;
- each wheel's dependencies are the designed sibling pins;
- ``aioice-stun`` installs alone in a fresh virtual environment and imports.
"""

from __future__ import annotations

import email.parser
import subprocess
import sys
import venv
import zipfile
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"stun": "aioice-stun", "turn": "aioice-turn", "mdns": "aioice-mdns", "ice": "aioice"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    built: dict[str, Path] = {}
    for folder, dist in PACKAGES.items():
        subprocess.run(
            [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
            cwd=ROOT / "packages" / folder,
            check=True,
            capture_output=True,
        )
        (wheel,) = out.glob(dist.replace("-", "_") + "-*.whl")
        built[dist] = wheel
    return built


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [n for n in archive.namelist() if ".dist-info/" not in n]


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(path).decode())


def test_no_file_in_two_wheels(wheels: dict[str, Path]) -> None:
    counts = Counter(name for wheel in wheels.values() for name in names(wheel))
    assert [name for name, n in counts.items() if n > 1] == []


def test_only_aioice_ships_the_namespace_init(wheels: dict[str, Path]) -> None:
    owners = [dist for dist, wheel in wheels.items() if "aioice/__init__.py" in names(wheel)]
    assert owners == ["aioice"]


def test_each_wheel_holds_its_own_package(wheels: dict[str, Path]) -> None:
    for folder, dist in PACKAGES.items():
        files = names(wheels[dist])
        assert f"aioice/{folder}/__about__.py" in files
        assert f"aioice/{folder}/py.typed" in files
        others = {f.split("/")[1] for f in files if f.count("/") >= 2}
        assert others == {folder}, f"{dist} ships {others}"


def test_dependencies_are_the_designed_pins(wheels: dict[str, Path]) -> None:
    requires = {
        dist: sorted(metadata(wheel).get_all("Requires-Dist") or [])
        for dist, wheel in wheels.items()
    }
    assert requires["aioice-stun"] == []
    assert requires["aioice-turn"] == ["aioice-stun<0.2,>=0.1"]
    assert requires["aioice-mdns"] == ["dnspython>=2.0"]
    assert requires["aioice"] == [
        "aioice-mdns<0.2,>=0.1",
        "aioice-stun<0.2,>=0.1",
        "aioice-turn<0.2,>=0.1",
        "ifaddr>=0.2",
    ]
    for wheel in wheels.values():
        assert metadata(wheel)["License-Expression"] == "BSD-3-Clause"


def test_stun_installs_and_imports_alone(wheels: dict[str, Path], tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", str(wheels["aioice-stun"])],
        check=True,
        capture_output=True,
    )
    script = (
        "import aioice, aioice.stun, importlib.util as u;"
        "m = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST);"
        "assert aioice.stun.parse_message(bytes(m)) == m;"
        "print(aioice.__file__, u.find_spec('aioice.ice'), aioice.stun.__version__)"
    )
    out = subprocess.run(
        [str(python), "-I", "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    # A PEP 420 namespace: no aioice/__init__.py, and no ICE package.
    assert out[:2] == ["None", "None"]
    assert out[2] == metadata(wheels["aioice-stun"])["Version"]
