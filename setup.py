"""Build the optional C speedups (``udptcp/core/_speedups.c``); everything else is in
pyproject.toml.

The extension is optional twice over: without a C compiler or Python headers (or on an
interpreter other than CPython) the build warns and installs pure Python, which is the
reference implementation and always works; ``UDPTCP_PURE=1`` at run time ignores a built
extension. ``udptcp.__speedups__`` says which one is running.
"""

from __future__ import annotations

import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that never fails the install: a compiler that is missing or refuses the
    file leaves the pure-Python codec in charge."""

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

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
