"""MkDocs hooks: pages generated from the source, so they cannot drift from it.

``<!-- config-fields -->`` in a page becomes a table of every ``udptcp.Config`` field with
its type, default and the ``#:`` comment above it in ``udptcp/core/config.py`` (read with
:mod:`ast`, so building the docs does not import udptcp). ``tests/test_docs.py`` checks
that every field has such a comment.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG_SOURCE = ROOT / "udptcp" / "core" / "config.py"
MARKER = "<!-- config-fields -->"


@dataclass
class FieldDoc:
    """One ``Config`` field as the source states it."""

    name: str
    type: str
    default: str
    doc: str
    section: str


def config_fields(path: Path = CONFIG_SOURCE) -> list[FieldDoc]:
    """Every annotated field of ``class Config``, in source order, with its comment."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config"]
    fields = []
    section = "Connections"
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        # The "#:" comment lines directly above the field; a plain "#" block above those
        # (separated by a blank line) starts a new section, named by its first sentence.
        doc: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#:"):
            doc.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        j = i
        while j >= 0 and not lines[j].strip():
            j -= 1
        block: list[str] = []
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("#:"):
            block.insert(0, lines[j].strip()[1:].strip())
            j -= 1
        if block:
            section = " ".join(block).split(".")[0]
        fields.append(
            FieldDoc(
                name=node.target.id,
                type=ast.get_source_segment(source, node.annotation) or "",
                default=_default(source, node.value),
                doc=" ".join(doc),
                section=section,
            )
        )
    return fields


def _default(source: str, value: ast.expr | None) -> str:
    if value is None:
        return "(required)"
    if (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "field"
    ):
        for kw in value.keywords:
            if kw.arg == "default":
                return ast.get_source_segment(source, kw.value) or ""
            if kw.arg == "default_factory":
                return f"{ast.get_source_segment(source, kw.value)}()"
    return ast.get_source_segment(source, value) or ""


def config_table(fields: list[FieldDoc] | None = None) -> str:
    """The Markdown for the configuration page: one table per section of fields."""
    out: list[str] = []
    current = None
    for f in fields if fields is not None else config_fields():
        if f.section != current:
            current = f.section
            out += [
                "",
                f"### {current}",
                "",
                "| field | default | what and why |",
                "| --- | --- | --- |",
            ]
        # Python-Markdown's tables do not split cells at a pipe inside a code span.
        cells = [f"`{f.name}`: `{f.type}`", f"`{f.default}`", f.doc.replace("|", "\\|")]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out).strip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: expand the generated sections of a page."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_table())
    return markdown
