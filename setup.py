"""Build the compiled parts; everything else is in pyproject.toml.

A default ``pip install`` builds two compiled twins of pure-Python code when it can:

- the C codec, ``udptcp/core/_speedups.c`` (encode, decode, the RFC 1071 checksum);
- the connection engine compiled with mypyc (the modules in ``udptcp.core._pure``'s
  ``COMPILED_MODULES``): pip's isolated build installs the pinned ``MYPYC_REQUIREMENT`` for
  it, a ``--no-build-isolation`` build uses the mypyc already installed.

Neither is ever required. Without a working C compiler and the Python headers (probed
first, in well under a second), on an interpreter other than CPython, without mypyc, or
when any part of a compilation fails, the install goes on with one line on stderr and the
pure-Python modules, which are the reference and always work. ``UDPTCP_MYPYC=0`` at build
time leaves the engine as Python (the codec is still built); ``UDPTCP_PURE=1`` at run time
ignores everything compiled. ``udptcp.__speedups__`` and ``udptcp.__compiled__`` say what
runs. The compiled modules sit beside their sources and take precedence; when a source is
newer than the build, ``udptcp/core/_pure.py`` runs the sources instead and warns.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent

#: The mypyc an isolated ``pip install`` builds the engine with. Pinned: the compiled
#: code's behaviour is only known for the mypyc that was tested.
MYPYC_REQUIREMENT = "mypy[mypyc]==2.4.1"

#: Commands that only describe the package (pip asks for the build requirements with
#: ``egg_info`` and for the metadata with ``dist_info``): no compiling, so no mypyc run.
METADATA_COMMANDS = frozenset({"", "egg_info", "dist_info", "sdist", "check", "clean"})

#: When this build started, before mypyc read any source: the compiled modules copied into
#: the source tree get this modification time, so a source edited during or after the build
#: is newer than them and the import-time guard (``_pure.py``) notices.
BUILD_STARTED_NS = time.time_ns()


def _read_constant(path: Path, name: str) -> Any:
    """The literal assigned to ``name`` in ``path``, read without importing the package."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        else:
            continue
        if target == name and value is not None:
            return ast.literal_eval(value)
    raise LookupError(f"{name} not found in {path}")


_PURE = HERE / "udptcp" / "core" / "_pure.py"
#: One list, read by both this build and the import-time guard that checks it is whole.
MYPYC_MODULES: tuple[str, ...] = tuple(_read_constant(_PURE, "COMPILED_MODULES"))
MYPYC_GROUP = str(_read_constant(_PURE, "COMPILED_GROUP"))


def _say(message: str) -> None:
    print(f"udptcp: {message}", file=sys.stderr)


def _compiler_problem() -> str | None:
    """None when a C compiler turns a file that includes ``Python.h`` into an object file
    (what every extension needs), else what went wrong."""
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} is not CPython"
    try:
        import sysconfig

        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler

        compiler = new_compiler()
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as tmp:
            probe = os.path.join(tmp, "probe.c")
            with open(probe, "w", encoding="ascii") as f:
                f.write("#include <Python.h>\nint udptcp_probe(void) { return 0; }\n")
            compiler.compile(
                [probe], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
    except Exception as exc:  # CompileError, a missing executable, a broken toolchain
        detail = str(exc).strip().rstrip(".") or type(exc).__name__
        return f"no working C compiler and Python headers ({detail})"
    return None


def _building() -> bool:
    """True unless this run of setup.py only produces metadata (see METADATA_COMMANDS)."""
    first = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
    return first not in METADATA_COMMANDS


def _mypyc_opted_out() -> bool:
    return os.environ.get("UDPTCP_MYPYC", "") == "0"


class OptionalBuildExt(build_ext):
    """build_ext that never fails the install: a compiler that refuses a file leaves the
    pure-Python twin in charge, and the mypyc build either builds whole or leaves nothing
    behind (a compiled module without its group library would not import)."""

    mypyc_names: frozenset[str] = frozenset()

    def build_extensions(self) -> None:
        mypyc = [ext for ext in self.extensions if ext.name in self.mypyc_names]
        others = [ext for ext in self.extensions if ext.name not in self.mypyc_names]
        for ext in others:
            self.build_extension(ext)
        try:
            for ext in mypyc:
                build_ext.build_extension(self, ext)
        except Exception as exc:
            for ext in mypyc:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
                self.extensions.remove(ext)  # so that --inplace copies none of them
            _say(f"mypyc engine not built ({exc}); installing the engine as pure Python")

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # a broken toolchain the probe did not catch
            _say(f"compiled parts not built ({exc}); installing pure Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _say(f"C codec not built ({exc}); installing the pure-Python codec")

    def copy_extensions_to_source(self) -> None:
        """The in-place copies (``--inplace``, ``pip install -e .``) carry the build's start
        time, not their source file's in ``build/``: the stale-build guard compares it with
        the sources' times, and an extension that build_ext found up to date and did not
        relink would otherwise look older than a source edited since the last build."""
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_file, _ = self._get_inplace_equivalent(build_py, ext)
            if os.path.exists(inplace_file):
                os.utime(inplace_file, ns=(BUILD_STARTED_NS, BUILD_STARTED_NS))


def _mypyc_extensions() -> list[Extension]:
    """The mypyc-compiled engine, or [] (with the reason on stderr) when it cannot be had."""
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not installed; the connection engine stays pure Python")
        return []
    try:
        return list(
            mypycify(
                [
                    # The rest of the package is type-checked by the project's own mypy run;
                    # here only the compiled modules must check.
                    "--follow-imports=silent",
                    *(f"udptcp/core/{name}.py" for name in MYPYC_MODULES),
                ],
                opt_level="3",
                debug_level="1",
                # The group's shared library inside the package, not at the top of
                # site-packages under a hash for a name.
                group_name=MYPYC_GROUP,
            )
        )
    except (Exception, SystemExit) as exc:  # mypyc reports type errors by exiting
        _say(f"mypyc could not compile the engine ({exc!r}); it stays pure Python")
        return []


ext_modules: list[Extension] = []
setup_requires: list[str] = []
building = _building()
problem = _compiler_problem()
if problem is not None:
    # Nothing can be compiled: say so once (when building), and do not fetch mypyc.
    if building:
        _say(f"{problem}; installing pure Python (no compiled codec or engine)")
else:
    ext_modules.append(
        Extension("udptcp.core._speedups", sources=["udptcp/core/_speedups.c"], optional=True)
    )
    if _mypyc_opted_out():
        pass
    elif building:
        mypyc_extensions = _mypyc_extensions()
        OptionalBuildExt.mypyc_names = frozenset(ext.name for ext in mypyc_extensions)
        ext_modules.extend(mypyc_extensions)
    elif importlib.util.find_spec("mypyc") is None:
        # pip asks for the build requirements with egg_info: setuptools turns setup_requires
        # into them, so pip's isolated build environment gets mypyc for the build that
        # follows. Declared only then: a build pass (or --no-build-isolation) without mypyc
        # must not make setuptools fetch it, it uses the mypyc present or none.
        setup_requires.append(MYPYC_REQUIREMENT)

setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": OptionalBuildExt},
    setup_requires=setup_requires,
)
