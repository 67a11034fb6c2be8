"""aiortc (from PyPI) over our aioice: a data channel between two RTCPeerConnection on
loopback, and aiortc's own RTCIceTransport test setup (issue #7).

aiortc imports ``aioice``, which is also our import name, so it runs in a virtual
environment of its own: ``.cache/aiortc-venv`` (gitignored), made with ``python -m venv``,
where pip installs aiortc together with wheels of our four distributions built here with
hatchling. Our wheels are named on pip's command line, so pip takes them and not PyPI's
aioice (0.14.0 meets aiortc's ``aioice>=0.12.0,<1.0.0``); the test checks that the venv's
``aioice.ice`` is ours (it has ``IceAgent``, upstream has not).

The venv is kept between runs: rebuilt when the Python, the aiortc requirement or our
packages' versions and metadata change; our wheels are reinstalled (``--no-deps``, a few
seconds) whenever our sources change, so the venv never runs stale code.

``aiortc_datachannel.py`` runs in the venv and prints one JSON report; each test here
asserts on a part of it. It restricts gathering to 127.0.0.1 (a test-only patch, see its
docstring) and takes aiortc's default STUN server away: no traffic leaves loopback.

When the venv cannot be built (no network, no PyPI) the tests skip with pip's reason;
under CI (``CI`` set) that is a failure instead, so that CI always runs them. A pip
resolution conflict (our aioice no longer meeting aiortc's pin) always fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("aiortc_datachannel.py")
VENV = ROOT / ".cache" / "aiortc-venv"
STAMP = VENV / "aioice-stamp.json"
AIORTC = "aiortc==1.16.0"
"The aiortc release under test (it needs Python >= 3.11)."
PACKAGES = {"stun": "aioice-stun", "turn": "aioice-turn", "mdns": "aioice-mdns", "ice": "aioice"}
LOOPBACK = "127.0.0.1"
PIP_TIMEOUT = 300
SCRIPT_TIMEOUT = 180

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason=f"{AIORTC} needs Python >= 3.11")


def python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def clean_env() -> dict[str, str]:
    """The children's environment: nothing that could put our sources on sys.path."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"}
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def package_versions() -> dict[str, str]:
    versions = {}
    for folder, dist in PACKAGES.items():
        about = ROOT / "packages" / folder / "src" / "aioice" / folder / "__about__.py"
        match = re.search(r'__version__ = "([^"]+)"', about.read_text())
        assert match is not None, about
        versions[dist] = match.group(1)
    return versions


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def venv_key() -> dict[str, Any]:
    """What the third-party part of the venv depends on."""
    return {
        "python": sys.version,
        "base_prefix": sys.base_prefix,
        "aiortc": AIORTC,
        "versions": package_versions(),
        "metadata": digest([ROOT / "packages" / f / "pyproject.toml" for f in PACKAGES]),
    }


def sources_digest() -> str:
    """Our four distributions' files as built into the wheels."""
    files = sorted(
        path
        for folder in PACKAGES
        for path in (ROOT / "packages" / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    return digest(files)


def build_wheels(out: Path) -> list[Path]:
    wheels = []
    for folder, dist in PACKAGES.items():
        subprocess.run(
            [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
            cwd=ROOT / "packages" / folder,
            check=True,
            capture_output=True,
            timeout=120,
        )
        (wheel,) = out.glob(dist.replace("-", "_") + "-*.whl")
        wheels.append(wheel)
    return wheels


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-I", "-m", "pip", "install", "--disable-pip-version-check", *args]
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=PIP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        cannot_build(f"pip install took more than {PIP_TIMEOUT} s")


def cannot_build(reason: str, *, always_fail: bool = False) -> NoReturn:
    message = f"cannot build the aiortc venv: {reason}"
    if always_fail or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pip_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or [line for line in lines if not line.startswith("WARNING")] or ["?"])[-1]


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One builder at a time (pytest-xdist workers share the cache)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent builders expected
        yield
        return
    with open(VENV.parent / "aiortc-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_venv() -> tuple[Path, dict[str, Any]]:
    """The venv's Python, made or refreshed as needed, and what was done (for the report)."""
    python = python_of(VENV)
    key = venv_key()
    sources = sources_digest()
    stamp: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        stamp = json.loads(STAMP.read_text())
    info: dict[str, Any] = {"created": False, "reinstalled_ours": False}
    if stamp.get("key") == key and stamp.get("sources") == sources and python.exists():
        return python, info
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        wheels = [str(w) for w in build_wheels(Path(tmp))]
        if stamp.get("key") != key or not python.exists():
            shutil.rmtree(VENV, ignore_errors=True)
            venv.create(VENV, with_pip=True, clear=True)
            # Our wheels on the same command line as aiortc: pip must take them, not PyPI's.
            proc = pip(python, "--quiet", *wheels, AIORTC)
            if proc.returncode != 0:
                shutil.rmtree(VENV, ignore_errors=True)
                error = pip_error(proc)
                conflict = "ResolutionImpossible" in proc.stderr or "conflict" in error
                cannot_build(error, always_fail=conflict)
            info["created"] = True
        else:
            proc = pip(python, "--quiet", "--no-deps", "--no-index", "--force-reinstall", *wheels)
            if proc.returncode != 0:
                pytest.fail(f"reinstalling our wheels: {pip_error(proc)}")
            info["reinstalled_ours"] = True
    probe = (
        "import aioice.ice, importlib.metadata as m, json;"
        "print(json.dumps([hasattr(aioice.ice, 'IceAgent'), aioice.ice.__file__,"
        " m.version('aioice'), m.version('aiortc')]))"
    )
    out = subprocess.run(
        [str(python), "-I", "-c", probe],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=True,
    ).stdout
    ours, location, version, aiortc_version = json.loads(out)
    assert ours, f"the venv's aioice is not ours: {location}"
    assert Path(location).is_relative_to(VENV), location
    assert version == key["versions"]["aioice"]
    STAMP.write_text(json.dumps({"key": key, "sources": sources, "aiortc": aiortc_version}))
    info["seconds"] = round(time.monotonic() - started, 1)
    return python, info


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    with locked():
        python, info = ensure_venv()
    proc = subprocess.run(
        [str(python), "-I", str(SCRIPT)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=SCRIPT_TIMEOUT,
        check=False,
        cwd=VENV,  # not the repository: nothing of ours on sys.path but the wheels
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    assert lines, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(lines[-1])
    result["venv"] = info
    print(json.dumps(result, indent=1))  # shown with -s or on failure
    return result


def assert_clean(scenario: dict[str, Any]) -> None:
    assert scenario["ok"], scenario.get("error")
    assert scenario["loopback_problems"] == []
    assert scenario["loop_errors"] == []
    assert scenario["leftover_tasks"] == []


def assert_datachannel_traffic(exchange: dict[str, Any]) -> None:
    for direction in ("pc1_to_pc2", "pc2_to_pc1"):
        result = exchange[direction]
        assert result["sent"] == result["received"] == 101  # 100 small + one of 64 KiB
        assert result["in_order_and_intact"]
        assert result["big_sha256_ok"]


def assert_loopback_pairs(scenario: dict[str, Any]) -> None:
    for name in ("pc1", "pc2"):
        for line in scenario["candidates"][name]:
            assert f" {LOOPBACK} " in line, line
            assert " typ host" in line, line
        pair = scenario["selected_pairs"][name]
        assert pair["local"][0] == pair["remote"][0] == LOOPBACK


def test_the_venv_runs_our_aioice(report: dict[str, Any]) -> None:
    assert report["ours"]
    assert Path(report["aioice_file"]).is_relative_to(VENV)
    versions = package_versions()
    for dist, version in versions.items():
        assert report["versions"][dist] == version
    assert report["versions"]["aiortc"] == AIORTC.split("==")[1]


def test_datachannel_between_two_peer_connections(report: dict[str, Any]) -> None:
    scenario = report["datachannel"]
    assert_clean(scenario)
    assert scenario["log_warnings"] == []
    assert scenario["connected"]
    assert scenario["ice_connection_states"] == {
        "pc1": ["new", "checking", "completed", "closed"],
        "pc2": ["new", "checking", "completed", "closed"],
    }
    assert scenario["connection_states"] == {
        "pc1": ["new", "connecting", "connected", "closed"],
        "pc2": ["new", "connecting", "connected", "closed"],
    }
    assert_loopback_pairs(scenario)
    assert_datachannel_traffic(scenario["exchanges"]["first"])
    assert scenario["time_to_datachannel_open_s"] < 5
    assert scenario["final_states"] == {
        "pc1": ["closed", "closed", "closed"],
        "pc2": ["closed", "closed", "closed"],
    }


def test_datachannel_with_aiortc_test_timers(report: dict[str, Any]) -> None:
    """aiortc's tests patch CONSENT_FAILURES = 1, CONSENT_INTERVAL = 1, RETRY_MAX = 1 and
    RETRY_RTO = 0.1: connecting, traffic and closing still work."""
    scenario = report["datachannel_fast_timers"]
    assert_clean(scenario)
    assert scenario["connected"]
    assert_loopback_pairs(scenario)
    assert_datachannel_traffic(scenario["exchanges"]["first"])
    assert scenario["final_states"] == {
        "pc1": ["closed", "closed", "closed"],
        "pc2": ["closed", "closed", "closed"],
    }


def test_consent_holds_on_an_idle_link_with_aiortc_test_timers(report: dict[str, Any]) -> None:
    scenario = report["datachannel_fast_timers"]
    assert scenario["ok"], scenario.get("error")
    assert scenario["survived_idle"], (scenario["ice_failed_at_s"], scenario["log_warnings"])
    assert_datachannel_traffic(scenario["exchanges"]["after_idle"])
    assert scenario["log_warnings"] == []
    # aiortc >= 1.8 expects closing one side to close the other (no "failed" on the way).
    assert scenario["closed_by_peer"]
    assert scenario["connection_states"]["pc2"] == ["new", "connecting", "connected", "closed"]


def test_ice_transport_as_aiortc_tests_it(report: dict[str, Any]) -> None:
    """RTCIceGatherer and RTCIceTransport alone, with aiortc's patched timers."""
    scenario = report["ice_transport"]
    assert_clean(scenario)
    connect = scenario["connect"]
    assert connect["states"] == ["completed", "completed"]
    assert sorted(connect["roles"]) == ["controlled", "controlling"]  # a role conflict
    assert connect["closed"] == ["closed", "closed"]
    assert connect["selected_pair"]["local"][0] == LOOPBACK
    fail = scenario["connect_fail"]
    assert fail["states"] == ["failed", "closed"]
    assert fail["time_s"] < 10
    consent = scenario["consent_expires"]
    assert consent["failed"]
    assert consent["states"] == ["new", "checking", "completed", "failed", "closed"]
    assert scenario["start_when_closed"] == "RTCIceTransport is closed"
