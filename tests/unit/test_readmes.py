"""The READMEs stay true: every `make` target they name exists, their local links resolve, and the Chinese one
keeps in step with the English one (each command it shows is one the English README shows too)."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT

READMES = ["README.md", "README.zh-CN.md"]
TARGETS = set(re.findall(r"^([a-zA-Z0-9_-]+):", (ROOT / "Makefile").read_text(), re.M))


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def shell_lines(markdown: str) -> list[str]:
    """The commands in a README's ```sh blocks, without their comments."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                lines.append(command)
    return lines


@pytest.mark.parametrize("name", READMES)
def test_every_make_target_a_readme_names_exists(name):
    named = {t for t in re.findall(r"\bmake ([a-z][a-z0-9-]*\*?)", text(name)) if not t.endswith("*")}  # not stack-*
    assert named, f"{name} names no make target at all"
    assert named - TARGETS == set(), f"{name} names make targets the Makefile lacks"


@pytest.mark.parametrize("name", READMES)
def test_every_local_link_resolves(name):
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text(name))
    assert links, f"{name} links to nothing"
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_the_readmes_link_to_each_other():
    assert "](README.zh-CN.md)" in text("README.md")
    assert "](README.md)" in text("README.zh-CN.md")


def test_the_chinese_readme_shows_only_commands_the_english_one_shows():
    english = set(shell_lines(text("README.md")))
    chinese = shell_lines(text("README.zh-CN.md"))
    assert len(chinese) >= 15
    assert [c for c in chinese if c not in english] == []


def test_the_chinese_readme_names_only_settings_the_english_one_documents():
    english = set(re.findall(r"\bMPC_[A-Z_]+", text("README.md")))
    chinese = set(re.findall(r"\bMPC_[A-Z_]+", text("README.zh-CN.md")))
    assert chinese and chinese - english == set()
