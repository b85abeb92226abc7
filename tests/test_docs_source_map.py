"""docs/source-map.md cannot rot: every file path (or pattern) and every `file:name` it names
exists.

A name is looked up without importing anything: in a .py file as a top-level function or class
(or `Class.method`), parsed with ``ast``; in a .pyx file as a ``def``/``cpdef``/``cdef``
function or class; in a C file as a function definition. Also checks that the semantics doc
has every section the code cites ("docs/semantics.md §x.y").
"""
import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "source-map.md"
SEMANTICS = ROOT / "docs" / "semantics.md"

# `path` or `path:name` inside backticks, path under one of the project's top-level folders
_REF = re.compile(r"`((?:nnlite|csrc|tests|docs|benchmarks|tools)/[^`:\s]+)(?::([\w.]+))?`")


def _refs():
    return sorted(set(_REF.findall(MAP.read_text())))


def _python_names(path):
    """{'f', 'Cls', 'Cls.method', ...} of a Python file's top level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}.{item.name}")
    return names


def _defines(path, name):
    if path.suffix == ".py":
        return name in _python_names(path)
    text = path.read_text()
    if path.suffix in (".pyx", ".pxd"):
        pattern = rf"^\s*(?:def|cpdef|cdef(?:\s+\w+)*?|class)\s+{re.escape(name)}\s*[(:]"
    else:  # C: a definition starts a line with its return type and has a body (a dtype
        # template's functions are named FN(name): csrc/*_tmpl.h)
        n = re.escape(name)
        pattern = rf"^[A-Za-z_][\w \t*()]*\b(?:{n}|FN\({n}\))\s*\([^;]*?\)\s*\{{"
    return re.search(pattern, text, flags=re.M | re.S) is not None


def test_the_map_names_files_and_functions():
    refs = _refs()
    assert len(refs) > 100, "the source map lost its table"
    for folder in ("nnlite/kernels/", "csrc/", "tests/"):
        assert any(p.startswith(folder) and n for p, n in refs), f"no {folder}file:name entry"


@pytest.mark.parametrize("path, name", _refs(), ids=lambda v: v or "-")
def test_every_reference_exists(path, name):
    if "*" in path or "<" in path:  # a pattern such as csrc/<name>_*.c: it must match something
        pattern = re.sub(r"<\w+>", "*", path)
        assert not name and list(ROOT.glob(pattern)), f"{path} matches no file"
        return
    f = ROOT / path
    assert f.exists(), f"docs/source-map.md names {path}, which does not exist"
    if name:
        assert f.is_file(), f"{path} is not a file, so it cannot define {name}"
        assert _defines(f, name), f"docs/source-map.md names {path}:{name}, not defined there"


def test_the_lookup_can_fail():
    """The checks above must be able to fail: a wrong name and a wrong path are rejected."""
    assert not _defines(ROOT / "nnlite/kernels/conv_reference.py", "conv3d")
    assert not _defines(ROOT / "csrc/pool.pyx", "max_pool3d_forward")
    assert _defines(ROOT / "csrc/pool.pyx", "max_pool2d_forward")
    assert not (ROOT / "nnlite/kernels/conv_fortran.py").exists()


def _cited_sections():
    try:
        out = subprocess.run(["git", "grep", "-h", "-o", "-E",
                              r"docs/semantics\.md §[0-9][0-9.§, –-]*", "--",
                              "nnlite", "csrc", "tests"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git grep is not available (not a git checkout)")
    return {m.rstrip(".") for m in re.findall(r"(\d+(?:\.\d+)?)", out)}


def test_every_cited_section_exists():
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", SEMANTICS.read_text(), flags=re.M))
    cited = _cited_sections()
    assert cited, "no docs/semantics.md citations found"
    missing = sorted(cited - headings, key=lambda s: [int(p) for p in s.split(".")])
    assert not missing, f"code cites docs/semantics.md sections that do not exist: {missing}"
