"""UDPTCP_PURE=1 runs the core's Python sources even where a mypyc build put compiled
modules beside them (setup.py, UDPTCP_MYPYC=1); udptcp.core.COMPILED says which runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import udptcp.core
from udptcp.core import _pure

_PROBE = """
import json, sys
import udptcp, udptcp.core
files = {n: getattr(m, "__file__", "") for n, m in sys.modules.items()
         if n.startswith("udptcp.core.") and m is not None}
print(json.dumps({"compiled": udptcp.core.COMPILED, "files": files,
                  "native": "udptcp.core._native__mypyc" in sys.modules}))
"""


def _probe(pure: str) -> dict[str, object]:
    env = dict(os.environ, UDPTCP_PURE=pure)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(udptcp.core.__file__).parents[2],
    ).stdout
    result: dict[str, object] = json.loads(out)
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
