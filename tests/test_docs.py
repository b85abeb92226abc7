"""The guide's snippets run as doctests: every number the guide prints is computed by its code."""
import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "how-convolution-works.md"


def _sections(text):
    """(title, body) of every numbered '## N.' section."""
    parts = re.split(r"^## (\d+\..*)$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


def test_guide_doctests_pass():
    result = doctest.testfile(str(GUIDE), module_relative=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} guide examples failed"
    assert result.attempted >= 100


def test_every_section_runs_fast_and_reference_side_by_side():
    sections = _sections(GUIDE.read_text())
    assert len(sections) == 12
    for title, body in sections:
        assert ">>> " in body, f"section {title!r} has no runnable snippet"
        assert "both(" in body or "using_backend" in body, (
            f"section {title!r} does not compare the fast path with the reference")


@pytest.mark.parametrize("anchor", re.findall(r"\]\(#([^)]+)\)", GUIDE.read_text()))
def test_contents_links_point_at_headings(anchor):
    """GitHub's heading slugs: lower case, punctuation/symbols dropped, spaces -> hyphens."""
    slugs = set()
    for title in re.findall(r"^## (.*)$", GUIDE.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        slugs.add(slug)
    assert anchor in slugs


def test_readme_links_the_guide_and_the_bench():
    readme = (ROOT / "README.md").read_text()
    assert "docs/how-convolution-works.md" in readme
    assert "nnlite bench" in readme
