"""Every relative link in README.md, CHANGELOG.md and docs/**/*.md leads somewhere: the file exists, and an anchor names a
heading of the target as GitHub spells it (Cyrillic headings and file names included).

Run as a script (`python tests/test_docs_links.py`) it prints every broken link, one per line.
"""

from __future__ import annotations

import re
import sys
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.I)
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) or [text](<target>), with an optional "title"; images (![alt](...)) included.
INLINE_LINK = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, every character that is not a letter, a
    mark, a digit, a connector (`_`), a hyphen or a space dropped, and each space turned into a hyphen."""
    text = _rendered_text(heading).lower()
    kept = "".join(ch for ch in text if ch in " -" or unicodedata.category(ch)[0] in "LMN"
                   or unicodedata.category(ch) == "Pc")
    return kept.replace(" ", "-")


def _rendered_text(heading: str) -> str:
    # What the reader sees of a heading: link text without the target, code without its backticks.
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), text)
    return re.sub(r"<[^>]+>", "", text)


def _prose_lines(path: Path):
    """(line number, line) for every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        yield number, line


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs (repeats get -1, -2, ... as on GitHub) and
    explicit <a id="..."> / <a name="..."> anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(path):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        if slug in seen:
            seen[slug] += 1
            found.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            found.add(slug)
    return found


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.source.relative_to(ROOT)}, line {self.line}: ({self.target})"


def links(path: Path) -> list[Link]:
    """The relative links of a Markdown file, outside code blocks and code spans."""
    found = []
    for number, line in _prose_lines(path):
        prose = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        targets = INLINE_LINK.findall(prose)
        definition = REFERENCE_DEFINITION.match(prose)
        if definition:
            targets.append(definition.group(1))
        for target in targets:
            target = target.strip("<>").strip()
            if target and not SCHEME.match(target) and not target.startswith("//"):
                found.append(Link(path, number, target))
    return found


def problem(link: Link, anchor_cache: dict[Path, set[str]]) -> str | None:
    """Why the link leads nowhere, or None when it resolves."""
    path_part, _, fragment = link.target.partition("#")
    path_part = urllib.parse.unquote(path_part)
    target = link.source if not path_part else (link.source.parent / path_part).resolve()
    if ROOT.resolve() not in (target, *target.parents):
        return f"expected a file inside the repository, got {target}"
    if not target.exists():
        return f"expected an existing file or folder, got {target.relative_to(ROOT.resolve())} (no such file)"
    if not fragment or target.suffix.lower() != ".md":
        return None
    fragment = urllib.parse.unquote(fragment)
    if target not in anchor_cache:
        anchor_cache[target] = anchors(target)
    if fragment not in anchor_cache[target]:
        return f"expected an anchor of {target.relative_to(ROOT.resolve())}, got #{fragment} (no such heading)"
    return None


def broken_links(paths: list[Path]) -> list[str]:
    cache: dict[Path, set[str]] = {}
    return [f"{link}: {reason}" for path in paths for link in links(path)
            if (reason := problem(link, cache)) is not None]


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    broken = broken_links([path])
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize(("heading", "slug"), [
    ("`--once`: one run, one verdict", "--once-one-run-one-verdict"),
    ("Schedule options (`defaults`)", "schedule-options-defaults"),
    ("`iiko_log`", "iiko_log"),
    ("Ingress: TLS and scoped credentials", "ingress-tls-and-scoped-credentials"),
    ("Сообщения sitewatch в Telegram: все оповещения каталога",
     "сообщения-sitewatch-в-telegram-все-оповещения-каталога"),
    ("FnWarning · critical · replace_urgent", "fnwarning--critical--replace_urgent"),
    ("Windows: a service (NSSM)", "windows-a-service-nssm"),
    ("What each driver reads, and who confirms it", "what-each-driver-reads-and-who-confirms-it"),
])
def test_slugs_are_githubs(heading, slug):
    assert github_slug(heading) == slug


def test_a_broken_link_and_a_missing_anchor_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "установка.md").write_text("# Установка на кассе\n\n## Шаг 1\n## Шаг 1\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "See [the guide](docs/установка.md#шаг-1-1), [encoded](docs/%D1%83%D1%81%D1%82%D0%B0%D0%BD%D0%BE%D0%B2%D0%BA%D0%B0.md)\n"
        "and [gone](docs/gone.md), [a typo](docs/установка.md#шаг-2), [self](#nowhere).\n"
        "```\n[in code](docs/ignored.md)\n```\n"
        "`[in a span](docs/ignored.md)` and [web](https://example.org/x.md#y).\n",
        encoding="utf-8")
    broken = broken_links([page])
    assert broken == [
        "README.md, line 2: (docs/gone.md): expected an existing file or folder, got docs/gone.md (no such file)",
        "README.md, line 2: (docs/установка.md#шаг-2): expected an anchor of docs/установка.md, got #шаг-2 "
        "(no such heading)",
        "README.md, line 2: (#nowhere): expected an anchor of README.md, got #nowhere (no such heading)",
    ]


if __name__ == "__main__":
    problems = broken_links(documents())
    print("\n".join(problems) or f"every relative link of {len(documents())} files resolves")
    sys.exit(1 if problems else 0)
