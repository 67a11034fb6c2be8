"""Upstream aioice in a virtual environment of its own, for side-by-side benchmarks.

Upstream aioice shares our import name ``aioice``, so it only ever runs in
``bench/.upstream-venv`` (created once with ``python -m venv`` and
``pip install aioice==0.13.0``, then reused), as ``python -I`` with a clean environment.
The helpers here create it and check that a child imports what it should.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
UPSTREAM_VENV: Final = BENCH_DIR / ".upstream-venv"
UPSTREAM_VERSION: Final = "0.13.0"
UPSTREAM_REQUIREMENT: Final = f"aioice=={UPSTREAM_VERSION}"


def our_src_dirs() -> list[Path]:
    return sorted(path.resolve() for path in (REPO_DIR / "packages").glob("*/src"))


def resolved_sys_path() -> list[Path]:
    paths: list[Path] = []
    for entry in sys.path:
        try:
            paths.append(Path(entry or os.getcwd()).resolve())
        except OSError:
            continue
    return paths


def is_within(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
    except ValueError:
        return False
    return True


def venv_python(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def clean_env() -> dict[str, str]:
    """The environment for the children: no variable that could put our sources on sys.path."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"}
    return {name: value for name, value in os.environ.items() if name not in drop}


def last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    if errors:
        return errors[-1]
    lines = [line for line in lines if not line.startswith("WARNING")]
    return lines[-1] if lines else "no output"


def upstream_installed_version(python: Path) -> str | None:
    probe = "import importlib.metadata as m; print(m.version('aioice'))"
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", probe],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_upstream_venv() -> tuple[Path | None, str]:
    """Create ``bench/.upstream-venv`` with aioice 0.13.0 once; (python, "") or (None, why)."""
    python = venv_python(UPSTREAM_VENV)
    if python.exists() and upstream_installed_version(python) == UPSTREAM_VERSION:
        return python, ""

    rel = UPSTREAM_VENV.relative_to(REPO_DIR)
    if not python.exists():
        if UPSTREAM_VENV.exists():
            shutil.rmtree(UPSTREAM_VENV)
        print(f"creating {rel} (once) ...", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "venv", str(UPSTREAM_VENV)],
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"python -m venv {rel} failed: {exc}"
        if proc.returncode != 0 or not python.exists():
            return None, f"python -m venv {rel} failed: {last_error_line(proc.stderr)}"

    print(f"installing {UPSTREAM_REQUIREMENT} into {rel} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            [
                str(python),
                "-I",
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                UPSTREAM_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"pip install {UPSTREAM_REQUIREMENT} failed: {exc}"
    if proc.returncode != 0:
        return None, f"pip install {UPSTREAM_REQUIREMENT} failed: {last_error_line(proc.stderr)}"
    version = upstream_installed_version(python)
    if version != UPSTREAM_VERSION:
        return None, f"{rel} has aioice {version}, not {UPSTREAM_VERSION}"
    return python, ""


def check_upstream_child(name: str, module_file: Path, ours: bool) -> str:
    """In the upstream child: check that ``name`` came from the venv and that none of
    our modules was imported; return upstream's version."""
    if ours or not is_within(module_file, Path(sys.prefix).resolve()):
        raise RuntimeError(f"{name} comes from {module_file}, not {sys.prefix}")
    src_dirs = our_src_dirs()
    imported = [
        module_name
        for module_name, module in list(sys.modules.items())
        if any(
            is_within(Path(getattr(module, "__file__", None) or "/").resolve(), src)
            for src in src_dirs
        )
    ]
    if imported:
        raise RuntimeError(f"the upstream child imported our modules: {imported}")
    version = importlib.metadata.version("aioice")
    if version != UPSTREAM_VERSION:
        raise RuntimeError(f"upstream aioice is {version}, not {UPSTREAM_VERSION}")
    return version


def installed_version(python: Path, distribution: str) -> str | None:
    """The version of ``distribution`` in the interpreter ``python``; ``None`` if missing."""
    probe = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", probe],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_upstream_extra(python: Path, distribution: str, version: str) -> str:
    """Install ``distribution==version`` into the upstream venv (once); "" or why not.

    For what a benchmark needs next to upstream (uvloop, say), at the version the
    ``bench`` environment has, so that both sides run the same code around aioice.
    """
    if installed_version(python, distribution) == version:
        return ""
    requirement = f"{distribution}=={version}"
    rel = UPSTREAM_VENV.relative_to(REPO_DIR)
    print(f"installing {requirement} into {rel} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            [
                str(python),
                "-I",
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                requirement,
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pip install {requirement} failed: {exc}"
    if proc.returncode != 0:
        return f"pip install {requirement} failed: {last_error_line(proc.stderr)}"
    if installed_version(python, distribution) != version:
        return f"{rel} has no {requirement} after pip install"
    return ""
