"""Build the optional C speedups (``udptcp/core/_speedups.c``); everything else is in
pyproject.toml.

The extension is optional twice over: without a C compiler or Python headers (or on an
interpreter other than CPython) the build warns and installs pure Python, which is the
reference implementation and always works; ``UDPTCP_PURE=1`` at run time ignores a built
extension. ``udptcp.__speedups__`` says which one is running.

``UDPTCP_MYPYC=1`` at build time also compiles the connection engine (the modules in
``MYPYC_MODULES``) with mypyc: pip's isolated build installs the pinned
``MYPYC_REQUIREMENT`` for it, a ``--no-build-isolation`` build uses the mypyc already
installed. That is never required: without the variable, without mypyc, or when
any part of the compilation fails, every compiled piece is dropped and the pure-Python
modules are installed as they are. The compiled modules sit beside their sources and
take precedence; ``UDPTCP_PURE=1`` at run time loads the sources instead (see
``udptcp/core/_pure.py``) and ``udptcp.core.COMPILED`` says which is running.
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: The Connection class chain and the leaves its hot path calls (compiling only the
#: leaves gains nothing: the calls between the Connection's parts are what mypyc makes
#: cheap). Not compiled: ``state`` (Enum subclasses), ``congestion`` (applications
#: subclass CongestionControl, and interpreted classes cannot inherit from compiled
#: ones), and everything outside the per-segment path.
MYPYC_MODULES = (
    "amplification",
    "arrival",
    "buffers",
    "connection",
    "control",
    "hystart",
    "pacing",
    "pmtu",
    "rack",
    "receiver",
    "recovery",
    "rtt",
    "sack",
    "sender",
    "seq",
    "sortedmap",
    "timers",
)


class OptionalBuildExt(build_ext):
    """build_ext that never fails the install: a compiler that is missing or refuses the
    file leaves the pure-Python codec in charge, and a mypyc build either builds whole
    or leaves nothing behind (a compiled module without its group library would not
    import)."""

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
            print(f"udptcp: mypyc core not built ({exc}); installing pure Python", file=sys.stderr)

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all, or a broken toolchain
            self._skip(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(exc)

    def _skip(self, exc: BaseException) -> None:
        print(
            f"udptcp: C speedups not built ({exc}); installing the pure-Python codec",
            file=sys.stderr,
        )


ext_modules = []
if platform.python_implementation() == "CPython":
    ext_modules.append(
        Extension(
            "udptcp.core._speedups",
            sources=["udptcp/core/_speedups.c"],
            optional=True,
        )
    )


#: The mypyc an isolated ``UDPTCP_MYPYC=1 pip install`` builds with.
MYPYC_REQUIREMENT = "mypy[mypyc]==2.4.1"


def _mypyc_wanted() -> bool:
    return (
        os.environ.get("UDPTCP_MYPYC", "") not in ("", "0")
        and platform.python_implementation() == "CPython"
    )


def _mypyc_extensions() -> list[Extension]:
    """The mypyc-compiled core when asked for (``UDPTCP_MYPYC=1``) and possible, else []."""
    if not _mypyc_wanted():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("udptcp: UDPTCP_MYPYC=1 but mypyc is not importable; pure Python", file=sys.stderr)
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
                # The shared library of the group inside the package, not at the top of
                # site-packages under a hash for a name.
                group_name="udptcp.core._native",
            )
        )
    except (Exception, SystemExit) as exc:  # mypyc reports type errors by exiting
        print(f"udptcp: mypyc could not compile the core ({exc!r}); pure Python", file=sys.stderr)
        return []


mypyc_extensions = _mypyc_extensions()
OptionalBuildExt.mypyc_names = frozenset(ext.name for ext in mypyc_extensions)
ext_modules.extend(mypyc_extensions)

# With UDPTCP_MYPYC=1, pip's isolated build environment gets mypyc too: setuptools turns
# setup_requires into the PEP 517 build requirements (first pass, when mypyc is not yet
# importable and _mypyc_extensions returned nothing). The version is pinned because the
# compiled code's behaviour is only known for the mypyc that was tested.
setup_requires = [MYPYC_REQUIREMENT] if _mypyc_wanted() else []

setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": OptionalBuildExt},
    setup_requires=setup_requires,
)
