"""The READMEs and the docs stay true: every `make` target they name exists, every local link resolves (to a file,
and to a heading when it names one), every MPC_* variable the package reads is documented, the README stays
short, and the Chinese README keeps in step with the English one (each command it shows is one the English README
shows too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import ROOT

READMES = ["README.md", "README.zh-CN.md"]
DOCS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
PAGES = READMES + DOCS
TARGETS = set(re.findall(r"^([a-zA-Z0-9_-]+):", (ROOT / "Makefile").read_text(), re.M))
README_MAX_LINES = 300


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def prose(markdown: str) -> str:
    """A page without its fenced code blocks (a `# comment` in one is not a heading, `a[0](x)` not a link)."""
    return re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)


def shell_lines(markdown: str) -> list[str]:
    """The commands in a page's ```sh blocks, without their comments."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                lines.append(command)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen."""
    heading = re.sub(r"`|\*\*?|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose(path.read_text(encoding="utf-8")), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def local_links(name: str) -> list[tuple[str, str]]:
    """(path, anchor) of every link on a page that stays in this repository; path is '' for the page itself."""
    links = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(text(name))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        links.append((path, anchor))
    return links


def test_the_readme_is_short():
    lines = text("README.md").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the reference belongs in docs/"


def test_the_docs_are_there():
    assert {"docs/architecture.md", "docs/configuration.md", "docs/swarm.md", "docs/troubleshooting.md",
            "docs/benchmark.md"} <= set(DOCS)


@pytest.mark.parametrize("name", READMES)
def test_both_readmes_link_to_every_doc(name):
    linked = {(Path(name).parent / path).as_posix() for path, _ in local_links(name)}
    assert [doc for doc in DOCS if doc not in linked] == []


@pytest.mark.parametrize("name", PAGES)
def test_every_make_target_a_page_names_exists(name):
    named = {t for t in re.findall(r"\bmake ([a-z][a-z0-9-]*\*?)", text(name)) if not t.endswith("*")}  # not stack-*
    if name in READMES:
        assert named, f"{name} names no make target at all"
    assert named - TARGETS == set(), f"{name} names make targets the Makefile lacks"


@pytest.mark.parametrize("name", PAGES)
def test_every_local_link_resolves(name):
    links = local_links(name)
    assert links, f"{name} links to nothing"
    here = (ROOT / name).parent
    broken = []
    for path, anchor in links:
        target = (here / path).resolve() if path else ROOT / name
        if not target.exists():
            broken.append(f"{path} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{path}#{anchor} (no such heading)")
    assert broken == []


def test_the_readmes_link_to_each_other():
    assert "](README.zh-CN.md)" in text("README.md")
    assert "](README.md)" in text("README.zh-CN.md")


def test_every_setting_the_package_reads_is_documented():
    read = set()
    for source in (ROOT / "mpcluster").rglob("*.py"):
        read |= set(re.findall(r"\bMPC_[A-Z][A-Z0-9_]*", source.read_text(encoding="utf-8")))
    documented = set()
    for name in ["README.md", *DOCS]:
        documented |= set(re.findall(r"\bMPC_[A-Z][A-Z0-9_]*", text(name)))
    assert read, "found no MPC_ variable in mpcluster/"
    assert sorted(read - documented) == []


def test_the_chinese_readme_shows_only_commands_the_english_one_shows():
    english = set(shell_lines(text("README.md")))
    chinese = shell_lines(text("README.zh-CN.md"))
    assert len(chinese) >= 15
    assert [c for c in chinese if c not in english] == []


def test_the_chinese_readme_names_only_settings_the_english_docs_document():
    english = set()
    for name in ["README.md", *DOCS]:
        english |= set(re.findall(r"\bMPC_[A-Z_]+", text(name)))
    chinese = set(re.findall(r"\bMPC_[A-Z_]+", text("README.zh-CN.md")))
    assert chinese and chinese - english == set()
