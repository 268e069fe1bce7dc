"""UDPTCP_PURE=1 runs the core's Python sources even where the build put mypyc-compiled
modules beside them (setup.py); so does a compiled build older than its sources, with a
warning. udptcp.core.COMPILED (udptcp.__compiled__) says which runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from unittest.mock import ANY

import pytest
from support.child import python_json

import udptcp.core
from udptcp.core import _pure

_CORE = Path(udptcp.core.__file__).parent
#: A compiled engine was built here (it runs unless UDPTCP_PURE=1, which this run may have).
_BUILT = any((_CORE / f"connection{suffix}").exists() for suffix in EXTENSION_SUFFIXES)


_PROBE = """
import json, sys
import udptcp, udptcp.core
files = {n: getattr(m, "__file__", "") for n, m in sys.modules.items()
         if n.startswith("udptcp.core.") and m is not None}
print(json.dumps({"compiled": udptcp.core.COMPILED, "files": files,
                  "native": "udptcp.core._native__mypyc" in sys.modules}))
"""


def _probe(pure: str) -> dict[str, object]:
    result: dict[str, object] = python_json(_PROBE, pure=pure)
    return result


def test_pure_switch_loads_every_core_module_from_its_source() -> None:
    got = _probe("1")
    files = got["files"]
    assert isinstance(files, dict) and "udptcp.core.connection" in files
    compiled = {n: f for n, f in files.items() if not f.endswith(".py") and "_speedups" not in n}
    assert compiled == {}
    assert got["compiled"] is False and got["native"] is False


def test_compiled_flag_matches_what_was_loaded() -> None:
    got = _probe("")
    files = got["files"]
    assert isinstance(files, dict)
    connection = files["udptcp.core.connection"]
    assert got["compiled"] is (not connection.endswith(".py"))
    assert got["native"] is got["compiled"]  # the group library only with compiled modules


def test_finder_leaves_other_names_and_missing_sources_to_the_regular_finders(
    tmp_path: Path,
) -> None:
    (tmp_path / "mod.py").write_text("X = 1\n")
    finder = _pure.PureSourceFinder("pkg", str(tmp_path))
    spec = finder.find_spec("pkg.mod", None)
    assert spec is not None and spec.origin == str(tmp_path / "mod.py")
    assert finder.find_spec("other.mod", None) is None
    assert finder.find_spec("pkg.sub.mod", None) is None  # only direct submodules
    assert finder.find_spec("pkg.absent", None) is None


# ---------------------------------------------------------------- the stale-build guard


def _fake_build(directory: Path, *, built_ns: int, sources_ns: int) -> None:
    """Sources and (empty) extension files named as a compiled build names them."""
    suffix = EXTENSION_SUFFIXES[0]
    group = _pure.COMPILED_GROUP.rpartition(".")[2] + "__mypyc"
    for name in _pure.COMPILED_MODULES:
        source = directory / f"{name}.py"
        source.write_text("X = 1\n")
        os.utime(source, ns=(sources_ns, sources_ns))
    for name in (*_pure.COMPILED_MODULES, group):
        ext = directory / f"{name}{suffix}"
        ext.write_bytes(b"")
        os.utime(ext, ns=(built_ns, built_ns))


def test_no_compiled_modules_is_the_pure_build_not_a_stale_one(tmp_path: Path) -> None:
    (tmp_path / "connection.py").write_text("X = 1\n")
    (tmp_path / f"_speedups{EXTENSION_SUFFIXES[0]}").write_bytes(b"")  # the codec alone
    assert _pure.stale_reason(str(tmp_path), compare_times=True) is None


def test_a_build_newer_than_every_source_is_used(tmp_path: Path) -> None:
    _fake_build(tmp_path, built_ns=2_000_000_000_000_000_000, sources_ns=10**18)
    assert _pure.stale_reason(str(tmp_path), compare_times=True) is None


def test_a_source_newer_than_its_compiled_module_is_named(tmp_path: Path) -> None:
    _fake_build(tmp_path, built_ns=2 * 10**18, sources_ns=10**18)
    edited = tmp_path / "rtt.py"
    os.utime(edited, ns=(2 * 10**18 + 1, 2 * 10**18 + 1))  # one nanosecond after the build
    reason = _pure.stale_reason(str(tmp_path), compare_times=True)
    assert reason is not None and "older than its sources" in reason and "rtt.py" in reason
    assert "connection.py" not in reason
    # Outside a checkout (pip wrote the files of a wheel in its own order) times say nothing.
    assert _pure.stale_reason(str(tmp_path), compare_times=False) is None


def test_only_a_source_checkout_compares_modification_times(tmp_path: Path) -> None:
    core = tmp_path / "udptcp" / "core"
    core.mkdir(parents=True)
    assert not _pure.in_checkout(str(core))  # site-packages/udptcp/core, say
    (tmp_path / "setup.py").write_text("")
    assert _pure.in_checkout(str(core))
    assert _pure.in_checkout(str(_CORE)) is (_CORE.parents[1] / "setup.py").exists()


def test_an_incomplete_or_foreign_set_of_compiled_modules_is_not_used(tmp_path: Path) -> None:
    suffix = EXTENSION_SUFFIXES[0]
    _fake_build(tmp_path, built_ns=2 * 10**18, sources_ns=10**18)
    (tmp_path / f"sack{suffix}").unlink()
    reason = _pure.stale_reason(str(tmp_path), compare_times=True)
    assert reason is not None and "missing: sack" in reason
    (tmp_path / f"sack{suffix}").write_bytes(b"")
    (tmp_path / f"config{suffix}").write_bytes(b"")  # a module the list does not compile
    reason = _pure.stale_reason(str(tmp_path), compare_times=True)
    assert reason is not None and "config" in reason
    (tmp_path / f"config{suffix}").unlink()
    group = _pure.COMPILED_GROUP.rpartition(".")[2] + "__mypyc"
    (tmp_path / f"{group}{suffix}").unlink()
    reason = _pure.stale_reason(str(tmp_path), compare_times=True)
    assert reason is not None and group in reason


_IMPORT = """
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import udptcp, udptcp.core
files = {n: m.__file__ for n, m in sys.modules.items()
         if n.startswith("udptcp.core.") and getattr(m, "__file__", None)}
print(json.dumps({"compiled": udptcp.core.COMPILED, "top": udptcp.__compiled__,
                  "speedups": udptcp.__speedups__,
                  "package": udptcp.__file__,
                  "warnings": [(w.category.__name__, str(w.message)) for w in caught],
                  "compiled_files": sorted(n for n, f in files.items()
                                           if not f.endswith(".py") and "_speedups" not in n)}))
"""


@pytest.mark.skipif(not _BUILT, reason="needs the mypyc-compiled engine built (pip install -e .)")
def test_an_edited_source_runs_pure_with_one_warning_in_a_copy_of_the_package(
    tmp_path: Path,
) -> None:
    package = _CORE.parent
    shutil.copytree(package, tmp_path / "udptcp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(package.parent / "setup.py", tmp_path)  # a checkout, as in an editable install
    env = {k: v for k, v in os.environ.items() if k not in ("UDPTCP_PURE", "PYTHONWARNINGS")}

    def run(**extra: str) -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        ).stdout
        result: dict[str, object] = json.loads(out)
        return result

    fresh = run()  # copytree keeps modification times: the copy is as fresh as the build
    assert fresh["package"] == str(tmp_path / "udptcp" / "__init__.py")
    assert fresh["compiled"] is True and fresh["top"] is True and fresh["warnings"] == []

    sender = tmp_path / "udptcp" / "core" / "sender.py"
    as_built = sender.stat().st_mtime_ns
    sender.touch()  # an edit after the build
    stale = run()
    assert stale["compiled"] is False and stale["top"] is False
    assert stale["compiled_files"] == []  # all or nothing: no compiled module was loaded
    warnings = stale["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    category, message = warnings[0]
    assert category == "RuntimeWarning"
    assert "older than its sources (sender.py" in message
    assert "pip install -e ." in message and "UDPTCP_PURE=1" in message

    silenced = run(UDPTCP_PURE="1")
    assert silenced["compiled"] is False and silenced["warnings"] == []

    # The C codec against its C source, the same way (the engine is left as it is).
    os.utime(sender, ns=(as_built, as_built))
    if fresh["speedups"]:
        (tmp_path / "udptcp" / "core" / "_speedups.c").touch()
        codec = run()
        assert codec["speedups"] is False and codec["compiled"] is True
        assert codec["warnings"] == [["RuntimeWarning", ANY]]
        assert "older than its source (_speedups.c changed" in str(codec["warnings"])

    (tmp_path / "setup.py").unlink()  # installed from a wheel: times are not compared
    installed = run()
    assert installed["compiled"] is True and installed["warnings"] == []
