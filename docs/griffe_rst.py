"""A griffe extension: udptcp's docstrings use a little reStructuredText; show it as Markdown.

``:class:`Config``` and the other roles become code spans, a paragraph ending in ``::``
(which introduces an indented code block) ends in ``:``. Nothing else is changed, so the
docstrings stay readable in ``help()`` and the editor.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|ref|term):`~?([^`]+)`")
_LITERAL_BLOCK = re.compile(r"::$", re.M)


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        text = _ROLE.sub(lambda m: f"`{m.group(1)}`", docstring.value)
        docstring.value = _LITERAL_BLOCK.sub(":", text)
