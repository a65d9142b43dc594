"""What the browser checks share: the book's pages in _toc.yml order, and where screenshots go.

The Chinese edition (built into ``_build/html/zh/``) has the same pages under ``zh/``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def toc_pages() -> list[str]:
    """Page paths (without .html) in the order of _toc.yml."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part.get("chapters", [])]
    return pages


PAGES = toc_pages()
ZH_PAGES = [f"zh/{page}" for page in PAGES]

# MyST that did not render: what a reader must never see as text.
RAW_MYST = [
    (
        re.compile(r"\{(exercise|solution|solution-start|solution-end|note|warning|admonition|dropdown)\}"),
        "a directive name",
    ),
    (re.compile(r"(?m)^\s*(```+|:::+)\s*\{[a-z-]+\}"), "a directive fence"),
    (re.compile(r"(?m)^\s*\([A-Za-z0-9_-]+\)=\s*$"), "a (label)= target"),
    (re.compile(r"\{(ref|doc|numref|term)\}`"), "a role"),
]


def raw_myst(text: str) -> list[str]:
    """The unrendered MyST markup in a page's text, one line per kind and instance."""
    return sorted({f"{what}: {m.group(0).strip()!r}" for pattern, what in RAW_MYST for m in pattern.finditer(text)})
