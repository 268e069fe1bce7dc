"""The documentation tells the truth: generated from the code, or checked against it.

The site itself is built by ``.ci/run`` with ``mkdocs build --strict`` (every warning an
error); these tests pin what a build cannot see.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support.demo import run_demo

from udptcp import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("udptcp_docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def test_every_config_field_is_documented_with_its_real_default() -> None:
    documented = {f.name: f for f in _hooks().config_fields()}
    fields = dataclasses.fields(Config)
    assert list(documented) == [f.name for f in fields]
    for f in fields:
        doc = documented[f.name]
        # A sentence of reason, not a stub: the configuration page shows it as written.
        assert len(doc.doc) >= 20, f"Config.{f.name} needs a '#:' comment in config.py"
        # The default shown is the default the code uses.
        shown = eval(doc.default, {})  # a literal or arithmetic on literals
        assert shown == f.default, (f.name, doc.default, f.default)


def test_the_configuration_page_expands_to_a_table_row_per_field() -> None:
    hooks = _hooks()
    page = (DOCS / "configuration.md").read_text()
    assert hooks.MARKER in page
    table = hooks.on_page_markdown(page, None, None, None)
    for f in dataclasses.fields(Config):
        assert re.search(rf"^\| `{f.name}`: `", table, re.M), f.name
    assert "| `max_datagram`: `int | None` | `None` |" in table


def test_the_architecture_page_maps_every_module_from_its_docstring() -> None:
    hooks = _hooks()
    page = hooks.on_page_markdown((DOCS / "architecture.md").read_text(), None, None, None)
    assert hooks.MODULE_MARKER not in page and hooks.RFC_MARKER not in page
    package = ROOT / "udptcp"
    for path in sorted(package.rglob("*.py")):
        if not path.read_text().strip():
            continue  # an empty __init__.py
        name = str(path.relative_to(package))
        row = re.search(rf"^\| `{re.escape(name)}` \| (.*?) \|", page, re.M)
        assert row and row.group(1).strip(), f"udptcp/{name} needs a module docstring"
    assert re.search(r"^\| 6298 \| the retransmission timer \| `core/rtt.py`", page, re.M)


def test_no_design_section_references_are_left() -> None:
    """Code, tests and output point at the documentation, not at a note users never see."""
    needle = "DESIGN" + " §"
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = [
        name
        for name in files
        if (ROOT / name).is_file() and needle in (ROOT / name).read_text(errors="replace")
    ]
    assert offenders == []


def test_links_into_the_architecture_page_name_real_sections() -> None:
    """Code comments that point into the architecture page must name a heading it has."""
    text = (DOCS / "architecture.md").read_text()
    anchors = {
        re.sub(r"[^\w\- ]", "", title).strip().lower().replace(" ", "-")
        for title in re.findall(r"^#+ (.+)$", text, re.M)
    }
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    cited = set()
    for name in files:
        for anchor in re.findall(r"architecture\.md#([\w\-]+)", (ROOT / name).read_text()):
            cited.add(anchor)
    assert cited, "nothing points at the architecture page"
    assert cited <= anchors, cited - anchors


def _transcript_blocks() -> list[tuple[list[str], list[str]]]:
    """The tutorial's transcripts: (demo arguments, lines) for each ``text`` block."""
    text = (DOCS / "tutorial.md").read_text()
    blocks = re.findall(r"<!-- demo:(.*?)-->\n```text\n(.*?)\n```", text, re.S)
    return [(args.split(), body.split("\n")) for args, body in blocks]


def test_the_tutorial_transcripts_are_what_the_demo_prints() -> None:
    blocks = _transcript_blocks()
    assert len(blocks) >= 4
    assert '--8<-- "examples/tls_echo.py"' in (DOCS / "tls.md").read_text()
    outputs: dict[tuple[str, ...], list[str]] = {}
    for args, lines in blocks:
        key = tuple(args)
        if key not in outputs:
            outputs[key] = run_demo(*args).split("\n")
        out = outputs[key]
        # The block is a contiguous run of the demo's lines.
        starts = [i for i, line in enumerate(out) if line == lines[0]]
        assert any(out[i : i + len(lines)] == lines for i in starts), (
            f"tutorial block for demo {' '.join(args)!r} no longer matches; rerun the demo "
            f"and paste its output:\n" + "\n".join(lines)
        )


@pytest.mark.parametrize(
    "page", sorted(p.name for p in DOCS.glob("*.md")), ids=lambda name: name[:-3]
)
def test_every_page_is_in_the_navigation_and_its_snippets_exist(page: str) -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    assert f": {page}" in nav
    text = (DOCS / page).read_text()
    assert "--8 <" not in text  # a formatter's mangling of a snippet line
    for target in re.findall(r'--8<-- "([^"]+)"', text):
        path, _, section = target.partition(":")
        text = (ROOT / path).read_text()
        if section:
            assert f"--8<-- [start:{section}]" in text and f"--8<-- [end:{section}]" in text


def test_the_docs_extra_and_ci_build_the_site_strictly() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras = ast.literal_eval(
        re.search(r"^docs = (\[.*?\])$", pyproject, re.M | re.S).group(1)  # type: ignore[union-attr]
    )
    assert any(req.startswith("mkdocs") for req in extras)
    assert any(req.startswith("mkdocstrings") for req in extras)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "mkdocs build --strict" in ci and "'.[docs]'" in ci
