#!/usr/bin/env python3
"""The Chinese edition (中文版): a translation catalog, and the book generated from it.

The English notebooks and prose pages are the one source. Each has a catalog under
``i18n/zh/`` (``notebooks/NN-name.json``, ``book/name.json``) that holds, for every piece of
prose, the English it translates, a hash of that English, and the translation:

* a notebook's markdown cells are keyed by their cell id;
* a prose page (``book/*.md``) is cut into blocks (paragraphs, lists, tables, headings, and
  each fenced block whole), keyed by the hash of the block's English text.

``build`` writes the Chinese edition under ``zh/``: each notebook is the English one with its
markdown cells replaced by their translations, and its code cells and outputs copied byte for
byte, so it shows exactly the outputs nbval verified. A translation whose hash no longer
matches its English is stale, and ``build`` refuses it, as the tests do.

    python scripts/i18n.py sync [FILE ...]    add new English to the catalogs, untranslated
    python scripts/i18n.py status [FILE ...]  list what is untranslated or stale, with the English
    python scripts/i18n.py build              write zh/ (fails on anything untranslated or stale)
    python scripts/i18n.py check              exit 1 if zh/ differs from what build would write

FILE is an English source (``notebooks/01-process-basics.ipynb``, ``book/intro.md``);
without one, every source in _toc.yml.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "i18n" / "zh"
OUT = ROOT / "zh"
LANGUAGE = "zh"

# What the Chinese edition's _config.yml changes in the English one, and its part captions.
ZH_CONFIG = CATALOGS / "config.yml"
ZH_TOC = CATALOGS / "toc.yml"


def digest(text: str) -> str:
    """The hash a catalog stores for an English text: 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- sources


def toc_sources() -> list[str]:
    """Every source file of the English book, in _toc.yml order, as repo-relative paths."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]
    for part in toc.get("parts", []):
        names.extend(chapter["file"] for chapter in part.get("chapters", []))
    found = []
    for name in names:
        for suffix in (".ipynb", ".md"):
            if (ROOT / f"{name}{suffix}").exists():
                found.append(f"{name}{suffix}")
                break
        else:
            raise SystemExit(f"i18n: {name} in _toc.yml has no .ipynb or .md file")
    return found


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})")


def prose_blocks(text: str) -> list[str]:
    """A Markdown page cut into blocks: runs of non-blank lines, a fenced block kept whole.

    A fence (```, ~~~ or :::, as MyST writes directives) runs to its closing fence even across
    blank lines, so a directive and everything inside it is one block.
    """
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        if fence is not None:
            current.append(line)
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and stripped.strip(fence[0]) == "":
                fence = None
            continue
        match = FENCE.match(line)
        if match:
            fence = match["fence"]
            current.append(line)
            continue
        if line.strip() == "":
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if fence is not None:
        raise ValueError(f"unclosed fence {fence!r} in a prose page")
    if current:
        blocks.append("\n".join(current))
    return blocks


def needs_no_translation(text: str) -> bool:
    """True for markup with no prose: fence lines, directive options, blank lines, labels."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or FENCE.match(line) or re.fullmatch(r":[\w-]+:.*", stripped):
            continue
        if re.fullmatch(r"\([\w-]+\)=", stripped):
            continue
        return False
    return True


@dataclass
class Piece:
    """One piece of English prose and the key its translation is stored under."""

    key: str
    en: str


def pieces(source: str) -> list[Piece]:
    """The translatable pieces of one English source, in order."""
    path = ROOT / source
    if source.endswith(".ipynb"):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        found = []
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                if "id" not in cell:
                    raise SystemExit(f"i18n: a markdown cell of {source} has no id (nbformat 4.5)")
                found.append(Piece(cell["id"], "".join(cell["source"])))
        return found
    return [Piece(digest(block), block) for block in prose_blocks(path.read_text(encoding="utf-8"))]


def catalog_path(source: str) -> Path:
    return CATALOGS / Path(source).with_suffix(".json")


def load_catalog(source: str) -> dict:
    path = catalog_path(source)
    if not path.exists():
        return {"source": source, "entries": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def save_catalog(source: str, catalog: dict) -> None:
    path = catalog_path(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalog, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- status


# As in CommonMark, an inline code span or a role may run across a line end (not a blank line);
# its text is compared with each line end read as a space, so a translation may rewrap it.
_ROLE = re.compile(r"(?<!`)\{(?P<role>[\w:-]+)\}`(?P<body>(?:[^`\n]|\n(?!\s*\n))*)`")
_CODE = re.compile(r"(?<![`\w])`(?P<code>(?:[^`\n]|\n(?!\s*\n))+)`(?!`)")


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text)


_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _role_target(body: str) -> str:
    match = re.search(r"<([^<>]+)>\s*$", body)
    return (match[1] if match else body).strip()


def skeleton(text: str) -> dict[str, list]:
    """The markup of a piece of prose that a translation must keep exactly.

    Fence and directive lines, directive options, labels, heading levels, role targets
    (``{ref}`any text <label>``` keeps ``label``), link targets, inline code, and the content of
    code blocks (fences whose info string is not a ``{directive}``, such as ```python).
    """
    fences, options, labels, headings, code_blocks = [], [], [], [], []
    block: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        match = FENCE.match(line)
        if block is not None:
            if match and stripped.strip(stripped[0]) == "":
                code_blocks.append("\n".join(block))
                block = None
                fences.append(stripped)
            else:
                block.append(line)
            continue
        if match:
            fences.append(stripped)
            info = stripped.lstrip(stripped[0])
            if match["fence"][0] != ":" and info and not info.startswith("{"):
                block = []
            continue
        if re.fullmatch(r":[\w-]+:.*", stripped):
            options.append(stripped)
        elif re.fullmatch(r"\([\w-]+\)=", stripped):
            labels.append(stripped)
        elif re.match(r"#{1,6} ", stripped):
            headings.append(len(stripped) - len(stripped.lstrip("#")))
    prose = "\n".join(line for line in text.splitlines())
    roles = sorted((m["role"], _one_line(_role_target(m["body"]))) for m in _ROLE.finditer(prose))
    without_roles = _ROLE.sub("", prose)
    return {
        "fences and directives": fences,
        "directive options": options,
        "labels": labels,
        "heading levels": headings,
        "code blocks": code_blocks,
        "role targets": roles,
        "link targets": sorted(m["target"] for m in _LINK.finditer(without_roles)),
        "inline code": sorted(_one_line(m["code"]) for m in _CODE.finditer(without_roles)),
    }


def markup_differences(en: str, zh: str) -> list[str]:
    """What markup of the English a translation changed, lost or added, one line per kind."""
    theirs, ours = skeleton(en), skeleton(zh)
    found = []
    for kind, expected in theirs.items():
        if ours[kind] != expected:
            if isinstance(expected, list) and kind in {"role targets", "link targets", "inline code"}:
                lost = [x for x in expected if x not in ours[kind]]
                added = [x for x in ours[kind] if x not in expected]
                found.append(f"{kind}: lost {lost} added {added}" if lost or added else f"{kind}: counts differ")
            else:
                found.append(f"{kind}: English {expected!r}, translation {ours[kind]!r}")
    return found


@dataclass
class Problem:
    source: str
    key: str
    kind: str  # "untranslated", "stale" or "markup"
    en: str
    old_en: str = ""

    def describe(self) -> str:
        where = f"{self.source} [{self.key}]"
        if self.kind == "stale":
            return f"{where}: stale, the English changed since it was translated"
        if self.kind == "markup":
            return f"{where}: the translation changed the markup: {self.old_en}"
        return f"{where}: untranslated"


def problems(source: str) -> list[Problem]:
    """What keeps one source's translation from being complete and current."""
    entries = load_catalog(source)["entries"]
    found = []
    for piece in pieces(source):
        entry = entries.get(piece.key)
        if entry is None or not entry.get("zh", "").strip():
            found.append(Problem(source, piece.key, "untranslated", piece.en))
        elif entry.get("sha") != digest(piece.en):
            found.append(Problem(source, piece.key, "stale", piece.en, entry.get("en", "")))
        else:
            changed = markup_differences(piece.en, entry["zh"])
            if changed:
                found.append(Problem(source, piece.key, "markup", piece.en, "; ".join(changed)))
    return found


def sync(source: str) -> int:
    """Add every piece of English the catalog lacks; return how many were added.

    A new piece gets an empty translation, unless it is markup with no prose, which is its own
    translation. A changed piece keeps its old translation and old hash, so it shows as stale
    until someone updates both (``status`` shows the old and the new English). Entries whose
    English is gone are dropped.
    """
    catalog = load_catalog(source)
    old = catalog["entries"]
    entries = {}
    added = 0
    for piece in pieces(source):
        if piece.key in old:
            entries[piece.key] = old[piece.key]
            continue
        zh = piece.en if needs_no_translation(piece.en) else ""
        entries[piece.key] = {"sha": digest(piece.en), "en": piece.en, "zh": zh}
        added += 1
    catalog = {"source": source, "entries": entries}
    save_catalog(source, catalog)
    return added


# ----------------------------------------------------------------------------- build

# A relative path out of book/ or notebooks/ to a file that is not translated (bench/, tests/,
# book/images/) needs one more "../" from zh/book/ or zh/notebooks/.
_OUTSIDE = re.compile(
    r"(?P<lead>\]\(|\{(?:include|literalinclude|image|figure)\}\s+)\.\./(?P<rest>(?!notebooks/|book/)[\w.-]+/)"
)


def _outward(text: str) -> str:
    return _OUTSIDE.sub(lambda m: f"{m['lead']}../../{m['rest']}", text)


def _images_outward(text: str) -> str:
    # book/images/... seen from book/ itself is "images/...": from zh/book/ it is ../../book/images/.
    return re.sub(r"(\]\(|\{(?:image|figure)\}\s+)images/", r"\1../../book/images/", text)


def translated(source: str) -> str:
    """The Chinese file for one source, as build writes it. Raises if anything is missing."""
    found = problems(source)
    if found:
        raise LookupError("\n".join(p.describe() for p in found))
    entries = load_catalog(source)["entries"]
    path = ROOT / source
    if source.endswith(".ipynb"):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        out = copy.deepcopy(notebook)
        for cell in out["cells"]:
            if cell["cell_type"] == "markdown":
                zh = _outward(entries[cell["id"]]["zh"])
                cell["source"] = [line for line in re.split(r"(?<=\n)", zh) if line]  # as nbformat stores it
        return json.dumps(out, indent=1, ensure_ascii=False) + "\n"
    text = path.read_text(encoding="utf-8")
    blocks = [_images_outward(_outward(entries[digest(b)]["zh"])) for b in prose_blocks(text)]
    return "\n\n".join(blocks) + "\n"


def expected_files() -> dict[Path, str]:
    """Every file of zh/ and what build writes into it."""
    files = {OUT / source: translated(source) for source in toc_sources()}
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    files[OUT / "_toc.yml"] = _translated_toc(toc)
    files[OUT / "_config.yml"] = _translated_config()
    return files


def _merge(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def _translated_config() -> str:
    """_config.yml with i18n/zh/config.yml's changes (title, language, paths seen from zh/)."""
    import yaml

    base = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    changes = yaml.safe_load(ZH_CONFIG.read_text(encoding="utf-8"))
    header = "# Generated by scripts/i18n.py from _config.yml and i18n/zh/config.yml: do not edit.\n"
    return header + yaml.safe_dump(_merge(base, changes), allow_unicode=True, sort_keys=False, width=100)


def _translated_toc(toc: str) -> str:
    import yaml

    captions = yaml.safe_load(ZH_TOC.read_text(encoding="utf-8"))
    lines = ["# Generated by scripts/i18n.py from _toc.yml and i18n/zh/toc.yml: do not edit.\n"]
    for line in toc.splitlines(keepends=True):
        match = re.match(r"(\s*- caption: )(.*)$", line.rstrip("\n"))
        if match:
            english = match[2]
            if english not in captions:
                raise LookupError(f"i18n/zh/toc.yml has no translation of the part caption {english!r}")
            line = f"{match[1]}{captions[english]}\n"
        if not line.lstrip().startswith("#"):
            lines.append(line)
    return "".join(lines)


def build() -> list[Path]:
    files = expected_files()
    written = []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    keep = set(files)
    for stale in [p for p in OUT.rglob("*") if p.is_file() and p not in keep and "_build" not in p.parts]:
        if stale.suffix in {".ipynb", ".md", ".yml"}:
            stale.unlink()
            written.append(stale)
    return written


def differences() -> list[str]:
    """Files of zh/ that differ from what build would write now."""
    found = []
    for path, text in expected_files().items():
        if not path.exists():
            found.append(f"{path.relative_to(ROOT)}: missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{path.relative_to(ROOT)}: differs from what build writes")
    return found


# ----------------------------------------------------------------------------- command line


def _sources(args: list[str]) -> list[str]:
    if not args:
        return toc_sources()
    known = set(toc_sources())
    for arg in args:
        if arg not in known:
            raise SystemExit(f"i18n: {arg} is not a source in _toc.yml (known: {', '.join(sorted(known))})")
    return args


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command == "sync":
        for source in _sources(args):
            added = sync(source)
            if added:
                print(f"{source}: {added} new piece(s) to translate")
        return 0
    if command == "status":
        found = [p for source in _sources(args) for p in problems(source)]
        for problem in found:
            print(problem.describe())
            if problem.kind == "stale":
                print("  translated from:", json.dumps(problem.old_en, ensure_ascii=False)[:400])
            print("  English now:    ", json.dumps(problem.en, ensure_ascii=False)[:400])
        print(f"{len(found)} piece(s) untranslated or stale")
        return 1 if found else 0
    if command == "build":
        try:
            written = build()
        except LookupError as error:
            print(f"i18n: the Chinese edition is incomplete; run `python scripts/i18n.py status`:\n{error}")
            return 1
        print(f"i18n: zh/ is current ({len(written)} file(s) written)")
        return 0
    if command == "check":
        found = differences()
        for line in found:
            print(line)
        return 1 if found else 0
    print(f"i18n: unknown command {command!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
