"""The Chinese edition (中文版) is complete, current, and generated from the English notebooks.

``scripts/i18n.py`` keeps a catalog per source under ``i18n/zh/`` and generates ``zh/``.
These tests fail when a markdown cell or prose block has no translation, when the English
changed after it was translated (its stored hash no longer matches), when a translation lost
markup (a label, a role's target, an inline code span, a code block), when ``zh/`` differs from
what generation writes now, or when a Chinese notebook's code cells differ from the English.
CONTRIBUTING.md says how to update a translation after editing a chapter.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_tool():
    spec = importlib.util.spec_from_file_location("book_i18n", ROOT / "scripts" / "i18n.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["book_i18n"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


i18n = _load_tool()
SOURCES = i18n.toc_sources()
NOTEBOOKS = [source for source in SOURCES if source.endswith(".ipynb")]
HOW = "update the catalog: python scripts/i18n.py sync, then status (CONTRIBUTING.md, 'Translations')"


@pytest.mark.parametrize("source", SOURCES)
def test_every_piece_is_translated_and_current(source):
    found = i18n.problems(source)
    assert not found, "\n".join([*(p.describe() for p in found[:20]), HOW])


def test_the_generated_edition_is_what_generation_writes_now():
    found = i18n.differences()
    assert not found, "\n".join([*found, "run: python scripts/i18n.py build (make book does)"])


@pytest.mark.parametrize("source", NOTEBOOKS)
def test_chinese_code_cells_and_outputs_are_the_english_ones(source):
    english = json.loads((ROOT / source).read_text(encoding="utf-8"))
    chinese = json.loads((ROOT / "zh" / source).read_text(encoding="utf-8"))
    assert chinese["metadata"] == english["metadata"]
    assert [(c["id"], c["cell_type"]) for c in chinese["cells"]] == [
        (c["id"], c["cell_type"]) for c in english["cells"]
    ]
    for theirs, ours in zip(english["cells"], chinese["cells"]):
        if theirs["cell_type"] == "code":
            assert ours == theirs, f"{source}: code cell {theirs['id']} differs from the English"
        else:
            assert "".join(ours["source"]) != "".join(theirs["source"]) or i18n.needs_no_translation(
                "".join(theirs["source"])
            ), f"{source}: markdown cell {theirs['id']} is the English text"


def test_prose_blocks_keep_a_fence_whole_across_blank_lines():
    page = "# Title\n\nOne\nparagraph.\n\n:::{note}\nFirst.\n\nSecond.\n:::\n\n```python\nx = 1\n\ny = 2\n```\n\n- a\n- b\n"
    assert i18n.prose_blocks(page) == [
        "# Title",
        "One\nparagraph.",
        ":::{note}\nFirst.\n\nSecond.\n:::",
        "```python\nx = 1\n\ny = 2\n```",
        "- a\n- b",
    ]
    with pytest.raises(ValueError, match="unclosed fence"):
        i18n.prose_blocks("```python\nx = 1\n")


def test_markup_a_translation_must_keep():
    english = "(pools)=\n## Pools\n\nSee {ref}`the basics <process-basics>` and `Pool.map`.\n```python\nx = 1\n```"
    good = "(pools)=\n## 进程池 (Pools)\n\n参见{ref}`基础 <process-basics>`与 `Pool.map`。\n```python\nx = 1\n```"
    assert i18n.markup_differences(english, good) == []
    for broken, kind in [
        (good.replace("(pools)=\n", ""), "labels"),
        (good.replace("## ", "### "), "heading levels"),
        (good.replace("<process-basics>", "<basics>"), "role targets"),
        (good.replace("`Pool.map`", "Pool.map"), "inline code"),
        (good.replace("x = 1", "x = 2"), "code blocks"),
    ]:
        assert [line.split(":")[0] for line in i18n.markup_differences(english, broken)] == [kind]


@pytest.fixture
def tiny_book(tmp_path, monkeypatch):
    """A two-page book of its own (a notebook and a prose page), with an empty catalog."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: Processes (进程)\n"
        "    chapters:\n      - file: notebooks/01-demo\n",
        encoding="utf-8",
    )
    (tmp_path / "_config.yml").write_text("title: Demo\nhtml:\n  favicon: book/images/f.svg\n", encoding="utf-8")
    code = {
        "cell_type": "code",
        "execution_count": 1,
        "id": "c1",
        "metadata": {},
        "outputs": [{"name": "stdout", "output_type": "stream", "text": ["4\n"]}],
        "source": ["print(2 + 2)"],
    }
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": ["# Demo\n", "\n", "Uses `print`."]},
            code,
            {"cell_type": "markdown", "id": "m2", "metadata": {}, "source": ["```{solution-end}\n", "```"]},
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "notebooks" / "01-demo.ipynb").write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    (tmp_path / "book" / "intro.md").write_text(
        "# Intro\n\nFirst paragraph.\n\n![plot](../bench/plot.svg)\n", encoding="utf-8"
    )
    catalogs = tmp_path / "i18n" / "zh"
    catalogs.mkdir(parents=True)
    (catalogs / "config.yml").write_text("title: 演示\nhtml:\n  favicon: ../book/images/f.svg\n", encoding="utf-8")
    (catalogs / "toc.yml").write_text('"Processes (进程)": "进程 (Processes)"\n', encoding="utf-8")
    for name, value in [
        ("ROOT", tmp_path),
        ("CATALOGS", catalogs),
        ("OUT", tmp_path / "zh"),
        ("ZH_CONFIG", catalogs / "config.yml"),
        ("ZH_TOC", catalogs / "toc.yml"),
    ]:
        monkeypatch.setattr(i18n, name, value)
    return tmp_path


def _translate_all(source: str, prefix: str = "中文：") -> None:
    catalog = i18n.load_catalog(source)
    for entry in catalog["entries"].values():
        if not entry["zh"]:
            english = entry["en"]
            entry["zh"] = (
                english.replace("First paragraph.", "第一段。").replace("Uses", "使用").replace("# ", "# 中文 ")
            )
    i18n.save_catalog(source, catalog)


def test_the_tool_finds_untranslated_stale_and_hand_edited(tiny_book):
    notebook, page = "notebooks/01-demo.ipynb", "book/intro.md"
    assert i18n.sync(notebook) == 2 and i18n.sync(page) == 3
    # The solution-end fence is markup only: it is its own translation.
    assert {p.key for p in i18n.problems(notebook)} == {"m1"}
    assert len(i18n.problems(page)) == 3
    _translate_all(notebook)
    _translate_all(page)
    assert i18n.problems(notebook) == [] and i18n.problems(page) == []

    i18n.build()
    assert i18n.differences() == []
    chinese = json.loads((tiny_book / "zh" / notebook).read_text(encoding="utf-8"))
    english = json.loads((tiny_book / notebook).read_text(encoding="utf-8"))
    assert chinese["cells"][1] == english["cells"][1]  # the code cell and its output, as they are
    assert "".join(chinese["cells"][0]["source"]) == "# 中文 Demo\n\n使用 `print`."
    assert "](../../bench/plot.svg)" in (tiny_book / "zh" / page).read_text(encoding="utf-8")
    assert "进程 (Processes)" in (tiny_book / "zh" / "_toc.yml").read_text(encoding="utf-8")

    # The English cell changes: its translation is stale, and build refuses it.
    english["cells"][0]["source"] = ["# Demo\n", "\n", "Uses `print` twice."]
    (tiny_book / notebook).write_text(json.dumps(english, indent=1), encoding="utf-8")
    assert [(p.key, p.kind) for p in i18n.problems(notebook)] == [("m1", "stale")]
    with pytest.raises(LookupError, match="stale"):
        i18n.build()

    # A prose paragraph changes: it has no translation any more.
    text = (tiny_book / page).read_text(encoding="utf-8").replace("First paragraph.", "The first paragraph.")
    (tiny_book / page).write_text(text, encoding="utf-8")
    assert [p.kind for p in i18n.problems(page)] == ["untranslated"]


def test_a_hand_edited_chinese_notebook_is_found(tiny_book):
    for source in ("notebooks/01-demo.ipynb", "book/intro.md"):
        i18n.sync(source)
        _translate_all(source)
    i18n.build()
    path = tiny_book / "zh" / "notebooks" / "01-demo.ipynb"
    path.write_text(path.read_text(encoding="utf-8").replace('"4\\n"', '"5\\n"'), encoding="utf-8")
    assert i18n.differences() == ["zh/notebooks/01-demo.ipynb: differs from what build writes"]


def test_a_lost_code_span_is_reported_as_markup(tiny_book):
    source = "notebooks/01-demo.ipynb"
    i18n.sync(source)
    catalog = i18n.load_catalog(source)
    catalog["entries"]["m1"]["zh"] = "# 演示\n\n使用 print。"
    i18n.save_catalog(source, catalog)
    [problem] = i18n.problems(source)
    assert problem.kind == "markup" and "inline code" in problem.describe()
