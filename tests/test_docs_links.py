"""Every relative link in the README and docs/, and every `docs/<page>.md#anchor` a code comment cites,
names a file that exists and a heading that is there (GitHub's anchor slugs), so a page or heading
renamed without its citations fails here. Code cites docs pages, not README headings."""
import re
from pathlib import Path

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]
# The project's own code: not what benchmarks/work/ holds (git-ignored: the reference scripts and their venv)
CODE = [p for d in ("src", "stages", "tests", "benchmarks") for p in sorted((REPO / d).rglob("*.py"))
        if (REPO / "benchmarks" / "work") not in p.parents]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CITATION = re.compile(r"\bdocs/([\w-]+\.md)(#[\w-]+)?")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, punctuation but `-` and `_`
    removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a markdown file's headings (outside code blocks), repeats numbered as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6} (.+?)\s*#*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def check(source: Path, target: str) -> str | None:
    """None when `target` (path#anchor, relative to source's directory) resolves, else what is wrong."""
    path, _, anchor = target.partition("#")
    file = (source.parent / path).resolve() if path else source
    if not file.exists():
        return f"{target}: no such file"
    if anchor and file.suffix == ".md" and anchor not in anchors(file):
        return f"{target}: no heading with that anchor in {file.relative_to(REPO)}"
    return None


def test_slugs_follow_github():
    assert slug("`dvc repro` end to end") == "dvc-repro-end-to-end"
    assert slug("7. llamafactory, swift, swift_grpo") == "7-llamafactory-swift-swift_grpo"
    assert slug("Rollouts and pass rates (stage `curation@<split>`)") == "rollouts-and-pass-rates-stage-curationsplit"
    assert slug("What it costs on one machine, and when to switch") == "what-it-costs-on-one-machine-and-when-to-switch"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert [e for t in targets if (e := check(page, t))] == []


def test_code_citations_of_docs_resolve():
    cited = [(p, f"docs/{name}{anchor}") for p in CODE for name, anchor in CITATION.findall(p.read_text())]
    assert len(cited) > 20  # the code does cite the docs
    broken = [f"{p.relative_to(REPO)}: {error}" for p, target in cited if (error := check(REPO / "x", target))]
    assert broken == []


def test_code_cites_docs_pages_not_readme_headings():
    """`README, "Some heading"` or `README "Some heading"` in code would break when the README changes."""
    stale = [f"{p.relative_to(REPO)}:{i}" for p in CODE for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"README,? \"|README's [\w-]+ table|in the README\b", line)
             and p.name != "test_docs_links.py"]
    assert stale == []


def test_the_readme_is_a_front_door():
    """What it is, the two commands, the walkthrough, the pipeline and links: the manual lives in docs/."""
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
