"""MkDocs hooks: pages generated from the source, so they cannot drift from it.

Markers in a page are replaced when the site is built; the source is read with :mod:`ast`
and regular expressions, so building the docs does not import udptcp.

* ``<!-- config-fields -->``: every ``udptcp.Config`` field with its type, default and the
  ``#:`` comment above it in ``udptcp/core/config.py`` (``tests/test_docs.py`` checks that
  every field has one).
* ``<!-- module-map -->``: every module of the package with the first paragraph of its
  docstring and the RFCs it cites most.
* ``<!-- rfc-map -->``: every RFC the code cites, with the modules that cite it most.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG_SOURCE = ROOT / "udptcp" / "core" / "config.py"
MARKER = "<!-- config-fields -->"
MODULE_MARKER = "<!-- module-map -->"
RFC_MARKER = "<!-- rfc-map -->"
PACKAGE = ROOT / "udptcp"
_RFC = re.compile(r"\bRFCs? ?(\d{3,4})\b")

#: Titles for the RFC table (short, in our words); an RFC not listed shows its number only.
RFC_TITLES = {
    "792": "ICMP",
    "896": "Nagle's algorithm",
    "1071": "computing the Internet checksum",
    "1122": "host requirements (delayed ACK, keepalive, silly windows, soft errors)",
    "1337": "TIME-WAIT assassination",
    "2018": "selective acknowledgments (SACK)",
    "2525": "known TCP implementation problems",
    "2883": "duplicate SACK (D-SACK)",
    "3042": "limited transmit",
    "3168": "ECN (its header bits)",
    "3465": "appropriate byte counting",
    "3708": "detecting spurious retransmissions with D-SACK",
    "4303": "ESP (its replay window)",
    "4443": "ICMPv6",
    "4787": "NAT behaviour for UDP",
    "4821": "packetization-layer path MTU discovery",
    "4987": "SYN flooding and SYN cookies",
    "5461": "TCP's reaction to soft errors",
    "5482": "the user timeout",
    "5681": "congestion control",
    "5780": "NAT behaviour discovery with STUN",
    "5869": "HKDF",
    "5927": "ICMP attacks against TCP",
    "5961": "blind in-window attacks (challenge ACKs)",
    "6191": "reusing TIME-WAIT with timestamps",
    "6298": "the retransmission timer",
    "6335": "port number ranges",
    "6479": "IPsec anti-replay without bit shifting",
    "6528": "initial sequence numbers",
    "6582": "NewReno",
    "6675": "SACK-based loss recovery",
    "6928": "an initial window of ten segments",
    "6937": "proportional rate reduction",
    "6994": "shared experimental TCP options",
    "7323": "window scaling, timestamps, PAWS",
    "7748": "X25519",
    "7983": "telling STUN from other datagrams on one socket",
    "8305": "happy eyeballs",
    "8445": "ICE",
    "8489": "STUN",
    "8656": "TURN",
    "8899": "datagram path MTU discovery",
    "8985": "RACK-TLP loss detection",
    "9000": "QUIC (its anti-amplification limit)",
    "9293": "TCP",
    "9406": "HyStart++",
    "9438": "CUBIC",
}


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


def modules(package: Path = PACKAGE) -> list[tuple[str, str, Counter[str]]]:
    """``(path from the package, first docstring paragraph, RFC citation counts)`` of every
    module, package by package."""
    out = []
    for path in sorted(package.rglob("*.py"), key=lambda p: (p.parent != package, str(p))):
        source = path.read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        summary = " ".join(doc.split("\n\n")[0].split())
        if path.name == "__init__.py" and not summary:
            continue
        out.append((str(path.relative_to(package)), summary, Counter(_RFC.findall(source))))
    return out


def _markdown_text(text: str) -> str:
    """A docstring paragraph as table-cell Markdown (reST roles and literals made code)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("|", "\\|")


def module_table() -> str:
    """Markdown: one row per module, its summary and its most cited RFCs."""
    rows = ["| module | what it does | RFCs it cites most |", "| --- | --- | --- |"]
    for name, summary, rfcs in modules():
        cited = ", ".join(number for number, _ in rfcs.most_common(4))
        rows.append(f"| `{name}` | {_markdown_text(summary)} | {cited} |")
    return "\n".join(rows) + "\n"


def rfc_table() -> str:
    """Markdown: every RFC the code cites, and the modules citing it most."""
    where: dict[str, Counter[str]] = {}
    for name, _, rfcs in modules():
        for number, count in rfcs.items():
            where.setdefault(number, Counter())[name] = count
    rows = ["| RFC | about | cited most in |", "| --- | --- | --- |"]
    for number in sorted(where, key=int):
        places = ", ".join(f"`{m}`" for m, _ in where[number].most_common(4))
        rows.append(f"| {number} | {RFC_TITLES.get(number, '')} | {places} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: expand the generated sections of a page."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_table())
    if MODULE_MARKER in markdown:
        markdown = markdown.replace(MODULE_MARKER, module_table())
    if RFC_MARKER in markdown:
        markdown = markdown.replace(RFC_MARKER, rfc_table())
    return markdown
