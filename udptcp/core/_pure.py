"""Choosing between the compiled engine and its pure-Python sources at import time.

A default build (see setup.py) puts mypyc-compiled modules beside their sources in this
package, and Python's own finder prefers an extension module to a ``.py`` file of the same
name. Two cases must still run the sources, through this module's finder, which goes first
on ``sys.meta_path`` before any other module of the package is imported and answers for
every ``udptcp.core`` module that has a ``.py`` file with that file:

- ``UDPTCP_PURE=1`` (the switch that also keeps the C codec unloaded);
- a compiled engine that does not match its sources: the set of compiled modules is not
  this module's list, or, in a source checkout (an editable install or an in-place build,
  where ``setup.py`` sits beside the package), a source changed after the build (an edit, a
  ``git checkout``, a pull). Running it would run old code; the sources are run instead,
  with one ``RuntimeWarning`` that says how to rebuild. Modification times are compared only
  in a checkout: pip installing a wheel gives every file the time it was written, in the
  wheel's order, so there they say nothing about which was built from which.

All modules are then pure, or all compiled ones are in use: a compiled module never sees a
pure sibling. The check costs one directory listing and a ``stat`` per listed module. The C
codec (``_speedups``, loaded by ``segment.py``) gets the same check against its C source.

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

__all__ = [
    "COMPILED_GROUP",
    "COMPILED_MODULES",
    "PureSourceFinder",
    "codec_stale_reason",
    "in_checkout",
    "install",
    "pure_requested",
    "stale_reason",
    "warn_stale",
]

#: The modules of this package the default build compiles with mypyc (setup.py reads this
#: tuple): the Connection class chain and the leaves its hot path calls (compiling only the
#: leaves gains nothing: the calls between the Connection's parts are what mypyc makes
#: cheap). Not compiled: ``state`` (Enum subclasses), ``congestion`` (applications subclass
#: CongestionControl, and interpreted classes cannot inherit from compiled ones), and
#: everything outside the per-segment path.
COMPILED_MODULES = (
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

#: mypyc's group name for them (setup.py): its shared library is ``<group>__mypyc``, here.
COMPILED_GROUP = "udptcp.core._native"

#: Extensions in this package that are not the engine: the C codec has no ``.py`` source.
_NOT_ENGINE = frozenset({"_speedups"})


def pure_requested() -> bool:
    """True when ``UDPTCP_PURE`` asks for the pure-Python implementation."""
    return os.environ.get("UDPTCP_PURE", "") not in ("", "0")


def _extensions(directory: str, names: list[str]) -> dict[str, str]:
    """Module name -> the extension file Python's finder would load for it (the first
    suffix in ``EXTENSION_SUFFIXES`` order, as the finder tries them)."""
    from importlib.machinery import EXTENSION_SUFFIXES

    found: dict[str, str] = {}
    for suffix in reversed(EXTENSION_SUFFIXES):  # the preferred suffix overwrites
        for name in names:
            stem = name[: -len(suffix)]
            if name.endswith(suffix) and stem.isidentifier():  # not "x.cpython-311-…"+".so"
                found[stem] = os.path.join(directory, name)
    return found


def in_checkout(directory: str) -> bool:
    """True when ``directory`` (``<root>/udptcp/core``) is in a source checkout: the
    ``setup.py`` that builds it is at ``<root>``, as in an editable install."""
    return os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(directory)), "setup.py"))


def stale_reason(directory: str, *, compare_times: bool) -> str | None:
    """Why the compiled engine in ``directory`` must not run, or None: none was built (the
    pure build), or it is whole and (with ``compare_times``) no source is newer than its
    compiled module or the group's library."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    compiled = _extensions(directory, names)
    group = COMPILED_GROUP.rpartition(".")[2] + "__mypyc"
    engine = {name for name in compiled if name not in _NOT_ENGINE and name != group}
    if not engine and group not in compiled:
        return None  # built without mypyc: nothing compiled to go stale
    if group not in compiled:
        return f"its shared library {group} is missing"
    missing = sorted(set(COMPILED_MODULES) - engine)
    if missing:
        return f"compiled modules are missing: {', '.join(missing)}"
    extra = sorted(engine - set(COMPILED_MODULES))
    if extra:
        return f"modules outside the compiled set are compiled: {', '.join(extra)}"
    if not compare_times:
        return None
    try:
        built_ns = os.stat(compiled[group]).st_mtime_ns
        newer = []
        for name in COMPILED_MODULES:
            source = os.path.join(directory, name + ".py")
            if os.stat(source).st_mtime_ns > min(built_ns, os.stat(compiled[name]).st_mtime_ns):
                newer.append(name + ".py")
    except OSError as exc:  # a source gone, say
        return f"cannot compare it with its sources ({exc})"
    if newer:
        return f"it is older than its sources ({', '.join(newer)} changed after the build)"
    return None


def codec_stale_reason(directory: str) -> str | None:
    """Why the C codec built in ``directory`` must not run, or None: in a source checkout,
    ``_speedups.c`` changed after the extension was built from it."""
    if not in_checkout(directory):
        return None
    try:
        names = os.listdir(directory)
        built = _extensions(directory, names).get("_speedups")
        if built is None:
            return None
        source = os.path.join(directory, "_speedups.c")
        if os.stat(source).st_mtime_ns > os.stat(built).st_mtime_ns:
            return "it is older than its source (_speedups.c changed after the build)"
    except OSError:
        return None  # no C source beside it: nothing to compare with
    return None


def warn_stale(what: str, directory: str, reason: str) -> None:
    """The one warning for a compiled part that is not used because of ``reason``."""
    import warnings

    warnings.warn(
        f"udptcp's compiled {what} in {directory} is not used: {reason}. Running its "
        "pure-Python twin instead (correct, slower). Rebuild with `pip install -e .` (or "
        "`python setup.py build_ext --inplace`) in the checkout, or set UDPTCP_PURE=1 to run "
        "pure Python without this warning.",
        RuntimeWarning,
        stacklevel=3,
    )


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
    ``UDPTCP_PURE`` asks for it or the compiled engine in ``directory`` is stale (then with
    a ``RuntimeWarning``), once; return whether one is installed."""
    for finder in sys.meta_path:
        if isinstance(finder, PureSourceFinder) and finder.prefix == package + ".":
            return True
    if not pure_requested():
        reason = stale_reason(directory, compare_times=in_checkout(directory))
        if reason is None:
            return False
        warn_stale("engine", directory, reason)
    sys.meta_path.insert(0, PureSourceFinder(package, directory))
    return True


install("udptcp.core", os.path.dirname(os.path.abspath(__file__)))
