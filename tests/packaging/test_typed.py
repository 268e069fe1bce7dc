"""What pip installs: the version from one source, the licence, and the types.

The package is built with setuptools exactly as ``pip install`` builds it (``egg_info`` for
the metadata, ``build_py`` for the files, both reading ``pyproject.toml``), then copied into
a fresh environment's site-packages, where a user's ``mypy --strict`` must see udptcp's
own annotations (PEP 561: only a package carrying ``py.typed`` is read for types).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import udptcp

ROOT = Path(__file__).resolve().parents[2]

USER_PROGRAM = """\
import asyncio

import udptcp


async def main() -> None:
    reader, writer = await udptcp.open_connection("127.0.0.1", 9000)
    reveal_type(udptcp.open_connection)
    reveal_type(udptcp.__version__)
    msl: int = udptcp.Config().msl  # a float: --strict must say so
    writer.write(b"hi")


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as setuptools builds it from a copy of the source tree."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "udptcp", src / "udptcp", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "egg").mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q"]
        + ["egg_info", "--egg-base", "egg", "build_py", "--build-lib", "lib"],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return src


def test_metadata_takes_the_version_from_udptcp_and_names_the_licence(built: Path) -> None:
    (info,) = (built / "egg").glob("*.egg-info")
    meta = (info / "PKG-INFO").read_text()
    assert f"Version: {udptcp.__version__}\n" in meta
    assert "License: MIT" in meta and "License-File: LICENSE" in meta
    assert "Classifier: Typing :: Typed" in meta
    assert "LICENSE" in (info / "SOURCES.txt").read_text().split()
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_python_m_udptcp_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "udptcp", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"udptcp {udptcp.__version__}"


def _mypy_strict(tmp_path: Path, package: Path) -> str:
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    (site,) = env.glob("lib/python*/site-packages")
    shutil.copytree(package, site / "udptcp")
    program = tmp_path / "user.py"
    program.write_text(USER_PROGRAM)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
        + ["--python-executable", str(env / "bin" / "python"), str(program)],
        cwd=tmp_path,  # not the repository: udptcp must come from the environment
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.stdout + proc.stderr


def test_mypy_strict_sees_the_installed_package_types(built: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    package = built / "lib" / "udptcp"
    assert (package / "py.typed").exists()  # package data: installed with the code
    out = _mypy_strict(tmp_path, package)
    assert "py.typed marker" not in out, out
    # udptcp's own signature, not Any ...
    assert 'Revealed type is "def (host: str | None =, port: int | str | None =' in out, out
    assert "tuple[asyncio.streams.StreamReader, asyncio.streams.StreamWriter]" in out, out
    assert 'Revealed type is "str"' in out, out
    # ... and a mistake against those types is reported.
    assert 'expression has type "float", variable has type "int"' in out, out


def test_without_the_marker_mypy_would_see_nothing(built: Path, tmp_path: Path) -> None:
    """The control: the same check fails without py.typed, so the test above means it."""
    pytest.importorskip("mypy")
    package = tmp_path / "unmarked" / "udptcp"
    shutil.copytree(built / "lib" / "udptcp", package)
    (package / "py.typed").unlink()
    out = _mypy_strict(tmp_path, package)
    assert "py.typed marker" in out, out
