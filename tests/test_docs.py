"""The documentation stands alone and names what exists: links resolve inside the repository,
nothing points outside it, and the module paths, functions and plugin config keys that
docs/method.md names are in the package source (read as text and with ``ast``; nothing is
imported)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
METHOD = REPO / "docs" / "method.md"

# The headings that code docstrings cite.
CITED_SECTIONS = ["ACR", "SeMi: memory bank", "SeMi: PLCE", "SeMi: OHEML", "SeMi: Embedding Align",
                  "SeMi: total loss and warm-up", "State saved in checkpoints", "CPE", "CDMAD"]
CHECKPOINT_SECTION = "State saved in checkpoints"

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
# A plugin key inside a code span: semi_* / acr_* / cpe_* / cdmad_*, not part of a longer name or a path.
PLUGIN_KEY = re.compile(r"(?<![\w/.-])((?:semi|acr|cpe|cdmad)_[a-z0-9_]+)(?![\w/.])")
MODULE_PATH = re.compile(r"^semi_usb/[\w/]+\.py$")
CODE_LINE = re.compile(r"^- Code: `(semi_usb/[\w/]+\.py)`:(.*)$", re.M)


def _prose(path: Path) -> str:
    """The page without its fenced code blocks."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set:
    seen: dict = {}
    out = set()
    for line in _prose(path).splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _sections(path: Path) -> dict:
    """``{'## ' heading: text}`` of a page (the text before the first heading under '')."""
    out, name = {"": []}, ""
    for line in _prose(path).splitlines():
        m = re.match(r"^##\s+(.*)$", line)
        if m:
            name = m.group(1).strip()
            out[name] = []
        else:
            out[name].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def _plugin_keys(text: str) -> set:
    return {k for span in SPAN.findall(text) for k in PLUGIN_KEY.findall(span)}


def _package_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "semi_usb").rglob("*.py")))


def _defined_as_config_key(key: str, source: str) -> bool:
    """``SSL_Argument("--key", ...)`` or the runner's ``Key("key", ...)``, or a value of a
    key with named values (``acr_code`` of ``acr_class_vector``: a string in a ``*_VECTORS``
    or ``*_WEIGHTS`` tuple of the code)."""
    if re.search(rf"""["']--{key}["']|\bKey\(\s*["']{key}["']""", source):
        return True
    return re.search(rf"""^[A-Z_]+(?:VECTORS|WEIGHTS) = \(.*["']{key}["']""", source, re.M) is not None


def test_pages_exist():
    names = {p.name for p in DOCS}
    assert {"README.md", "method.md", "protocols.md", "deviations.md", "reliability.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(page):
    bad = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if REPO not in dest.parents and dest != REPO:
            bad.append(f"{target}: outside the repository")
        elif not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor}")
    assert not bad, f"{page.name}: " + "; ".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_nothing_points_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for needle in ("../shared", "/work/"):
        assert needle not in text, f"{page.name} points to {needle!r}"


def test_method_has_the_sections_that_docstrings_cite():
    sections = _sections(METHOD)
    missing = [s for s in CITED_SECTIONS if s not in sections]
    assert not missing, f"docs/method.md lacks the sections {missing}"


def test_method_module_paths_exist():
    paths = {s for s in SPAN.findall(_prose(METHOD)) if MODULE_PATH.match(s)}
    assert len(paths) >= 9, "docs/method.md should name the modules of both algorithms"
    missing = sorted(p for p in paths if not (REPO / p).is_file())
    assert not missing, f"docs/method.md names modules that do not exist: {missing}"


def _defined_names(path: Path) -> set:
    """Top-level functions and classes of a module, and ``Class.method`` for their methods."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{n.name}" for n in node.body if isinstance(n, ast.FunctionDef)}
    return names


def test_method_code_lines_name_functions_of_their_modules():
    """Each "- Code: `module`: `name`, ..." line: the names (outside parentheses) are
    defined in that module."""
    lines = CODE_LINE.findall(_prose(METHOD))
    assert len(lines) >= 20
    bad = []
    for module, rest in lines:
        path = REPO / module
        if not path.is_file():
            bad.append(f"{module}: no such module")
            continue
        defined = _defined_names(path)
        names = SPAN.findall(re.sub(r"\([^)]*\)", "", rest))
        assert names, f"no function named on the line of {module}"
        bad += [f"{module}: {n}" for n in names if n not in defined]
    assert not bad, "docs/method.md names what is not defined: " + "; ".join(sorted(set(bad)))


def test_method_config_keys_exist_in_the_code():
    source = _package_source()
    sections = _sections(METHOD)
    keys = set().union(*(_plugin_keys(t) for name, t in sections.items() if name != CHECKPOINT_SECTION))
    assert len(keys) >= 20, "docs/method.md should name the plugin's keys"
    missing = sorted(k for k in keys if not _defined_as_config_key(k, source))
    assert not missing, f"docs/method.md names config keys that no argument defines: {missing}"
    # Checkpoint entries (acr_tau1_state, semi_state, ...) are strings of the code.
    entries = _plugin_keys(sections[CHECKPOINT_SECTION])
    missing = sorted(k for k in entries if re.search(rf"""["']{k}["']|\b{k}=""", source) is None)
    assert not missing, f"docs/method.md names checkpoint entries the code does not write: {missing}"


@pytest.mark.parametrize("name", ["protocols.md", "deviations.md"])
def test_other_pages_name_existing_keys_unless_planned(name):
    """Keys on a line marked "(planned)" are allowed to be missing; every other one exists."""
    source = _package_source()
    text = "\n".join(line for line in _prose(REPO / "docs" / name).splitlines() if "(planned)" not in line)
    missing = sorted(k for k in _plugin_keys(text) if not _defined_as_config_key(k, source))
    assert not missing, f"docs/{name} names keys that no argument defines (mark them (planned)?): {missing}"


def test_readme_code_map_names_every_module():
    """The README's code map has a row for every module of the package (an algorithm's
    package ``__init__.py`` through the row ``semi_usb/imb_algorithms/<name>/__init__.py``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    code_map = text[text.index("### Code map"):]
    code_map = code_map[:code_map.index("\n## ")]
    rows = set(re.findall(r"^\| `(semi_usb/[^`]+)` \|", code_map, re.M))
    modules = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "semi_usb").rglob("*.py"))
    assert len(modules) > 60
    algorithm_package = re.compile(r"^semi_usb/imb_algorithms/\w+/__init__\.py$")
    missing = [m for m in modules if m not in rows
               and not (algorithm_package.match(m) and "semi_usb/imb_algorithms/<name>/__init__.py" in rows)]
    assert not missing, f"README's code map lacks {missing}"
    gone = sorted(r for r in rows if "<name>" not in r and not (REPO / r).is_file())
    assert not gone, f"README's code map names modules that do not exist: {gone}"
