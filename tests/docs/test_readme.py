"""The docs are part of the feature: README.md is short and leads to every page, docs/configuration.md's
tables cover every setting the code reads, and no link in README.md or docs/ is dead."""

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from backends.active.settings import ActiveSettings
from backends.core.settings import CoreSettings
from backends.detector.settings import DetectorSettings
from backends.segmenter.settings import SegmenterSettings

ROOT = Path(__file__).resolve().parents[2]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
DOCS = ROOT / "docs"
CONFIGURATION_PATH = DOCS / "configuration.md"
CONFIGURATION = CONFIGURATION_PATH.read_text()
PAGES = [README_PATH, *sorted(DOCS.glob("*.md"))]
# README.md stays an overview; the reference lives in docs/ (wc -c, read as 12,000 bytes to be safe).
README_MAX_BYTES = 12_000
# Read with os.environ directly (server CLI, worker, watcher), not through a settings class.
DIRECT = ["HOST", "PORT", "WORKERS", "THREADS", "RQ_PRELOAD", "ACTIVE_WATCH_S", "LABEL_STUDIO_URL",
          "LABEL_STUDIO_API_KEY"]
# The section of docs/configuration.md whose table lists each settings class.
SECTION = {CoreSettings: "Every backend", DetectorSettings: "Detector (`DETECTOR_*`)",
           SegmenterSettings: "Segmenter (`SAM_*`)", ActiveSettings: "Active backend (`ACTIVE_*`)"}


def env_names(settings: type[BaseSettings]) -> list[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names = []
    for name, field in settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names.append((alias or f"{prefix}{name}").upper())
    return names


def without_code(text: str) -> str:
    """The text outside fenced code blocks, with inline code spans blanked (kept as a word, so a link
    whose text is code still reads as a link)."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]+`", "code", text)


def sections(text: str) -> dict[str, str]:
    """Heading text (without the #s) -> the text under it, up to the next heading of any level."""
    parts = re.split(r"^#{1,6} (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def table_names(text: str) -> set[str]:
    """Variables named in the first column of the Markdown tables in `text`."""
    names = set()
    for line in text.splitlines():
        if line.startswith("|"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered, lowercased, punctuation removed (but `-`
    and `_`), spaces turned into '-'."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of `page` (a repeated slug gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^```.*?^```[^\n]*$", "", page.read_text(), flags=re.M | re.S)
    for heading in re.findall(r"^#{1,6} (.+?)#*$", text, flags=re.M):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def links(page: Path) -> list[str]:
    """The targets of the inline links and images of `page`, outside code."""
    return re.findall(r"\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)", without_code(page.read_text()))


def relative_links(page: Path) -> list[str]:
    return [t for t in links(page) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, flags=re.I)]


@pytest.mark.parametrize("settings", [CoreSettings, DetectorSettings, SegmenterSettings, ActiveSettings],
                         ids=lambda s: s.__name__)
def test_every_setting_is_documented(settings):
    table = sections(CONFIGURATION).get(SECTION[settings])
    assert table is not None, f"docs/configuration.md has no section {SECTION[settings]!r}"
    missing = [name for name in env_names(settings) if name not in table_names(table)]
    assert not missing, f"docs/configuration.md's {SECTION[settings]!r} table documents no {missing}"


def test_settings_read_directly_are_documented():
    assert not [name for name in DIRECT if name not in table_names(CONFIGURATION)]


def test_the_detectors_per_project_settings_are_the_starred_rows():
    """The Detector table marks with * the rows a project's extra_params may override."""
    table = sections(CONFIGURATION)[SECTION[DetectorSettings]]
    starred = {name for line in table.splitlines() if line.startswith("|")
               for name in re.findall(r"`(DETECTOR_[A-Z0-9_]+)` \*", line.split("|")[1])}
    assert starred == {f"DETECTOR_{name.upper()}" for name in DetectorSettings.project_overridable}


def test_the_readme_starts_with_the_two_commands():
    first = README.split("```", 2)[1]
    assert "make up" in first and "make test" in first
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_short():
    size = len(README_PATH.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move the reference into docs/"


def test_every_setting_is_one_click_from_the_readme():
    """README.md's Settings entry (one paragraph or list item) links the page with every table."""
    entry = re.search(r"\*\*Settings\*\*(?:(?!\n\s*\n).)*", README, flags=re.S)
    assert entry, "README.md has no **Settings** entry"
    assert "](docs/configuration.md)" in entry.group(0), entry.group(0)


def test_every_docs_page_is_one_click_from_the_readme():
    linked = {(ROOT / target.split("#")[0]).resolve() for target in relative_links(README_PATH)}
    assert not [page.name for page in PAGES[1:] if page.resolve() not in linked]


def test_every_docs_page_links_back_to_the_readme():
    assert not [page.name for page in PAGES[1:] if "../README.md" not in relative_links(page)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    dead = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target}: no such heading in {file.relative_to(ROOT)}")
    assert not dead, f"{page.relative_to(ROOT)}: {dead}"


def test_slug_is_githubs():
    assert slug("Checking the images: `make docker-check`") == "checking-the-images-make-docker-check"
    assert slug("Detector (`DETECTOR_*`)") == "detector-detector_"
    assert slug("What it saves, measured") == "what-it-saves-measured"
    assert slug("The detector (port 9090)") == "the-detector-port-9090"


def test_links_are_found():
    """The link checker sees links in prose, with code as their text and across lines, but none in code."""
    sample = DOCS / "connecting.md"
    found = links(sample)
    assert "#how-many-tasks-per-retrieve-predictions" in found  # its text spans two lines
    assert "testing.md" in found  # its text is code
    assert not re.findall(r"\]\(", without_code("```\n[a](b)\n```\n`[c](d)`"))
