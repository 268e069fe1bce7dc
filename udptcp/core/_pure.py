"""Choosing between the compiled core and its pure-Python sources at import time.

A build with ``UDPTCP_MYPYC=1`` (see setup.py) puts mypyc-compiled modules beside their
sources in this package, and Python's own finder prefers an extension module to a ``.py``
file of the same name. ``UDPTCP_PURE=1`` (the switch that also keeps the C codec
unloaded) must still run the sources, so this module's finder, first on ``sys.meta_path``
and installed before any other module of the package is imported, answers for every
``udptcp.core`` module that has a ``.py`` file with that file. All modules are then pure
or all compiled ones are in use: a compiled module never sees a pure sibling.

This file itself is never compiled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["PureSourceFinder", "install", "pure_requested"]


def pure_requested() -> bool:
    """True when ``UDPTCP_PURE`` asks for the pure-Python implementation."""
    return os.environ.get("UDPTCP_PURE", "") not in ("", "0")


class PureSourceFinder:
    """Finds ``<package>.<name>`` as the source file ``<directory>/<name>.py`` (a
    ``sys.meta_path`` finder; not derived from ``importlib.abc.MetaPathFinder``, whose
    import costs ~10 ms)."""

    def __init__(self, package: str, directory: str) -> None:
        self.prefix = package + "."
        self.directory = directory

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """A source-file spec for a direct submodule of the package, else None."""
        if not fullname.startswith(self.prefix):
            return None
        name = fullname[len(self.prefix) :]
        if "." in name:
            return None
        source = os.path.join(self.directory, name + ".py")
        if not os.path.isfile(source):
            return None  # the C codec's _speedups, say: the regular finders decide
        from importlib.util import spec_from_file_location

        return spec_from_file_location(fullname, source)


def install(package: str, directory: str) -> bool:
    """Put a :class:`PureSourceFinder` for ``package`` first on ``sys.meta_path`` when
    ``UDPTCP_PURE`` asks for it (once); return whether one is installed."""
    if not pure_requested():
        return False
    for finder in sys.meta_path:
        if isinstance(finder, PureSourceFinder) and finder.prefix == package + ".":
            return True
    sys.meta_path.insert(0, PureSourceFinder(package, directory))
    return True


install("udptcp.core", os.path.dirname(os.path.abspath(__file__)))
