"""helpers.instruments.source: the code a chapter shows is the code that ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.instruments.source import Source, show_file, show_source
from helpers.processes.basics import ClockProcess, describe_self, wait_up_to

SCRIPTS = Path(__file__).resolve().parents[2] / "helpers" / "scripts"


def test_show_source_is_the_function_with_its_file():
    shown = show_source(describe_self)
    assert repr(shown).startswith("# helpers/processes/basics.py\ndef describe_self(")
    assert "out.put(" in repr(shown)


def test_markdown_form_is_a_fenced_python_block():
    markdown = show_source(wait_up_to)._repr_markdown_()
    assert markdown.startswith("```python\n# helpers/processes/basics.py\ndef wait_up_to(")
    assert markdown.endswith("\n```\n")


def test_html_form_is_highlighted_with_inline_styles():
    html = show_source(describe_self)._repr_html_()
    assert html.startswith('<div class="highlight"') and "style=" in html
    assert "describe_self" in html and "class=" in html.split(">", 1)[0]


def test_several_objects_and_a_class():
    shown = repr(show_source(describe_self, ClockProcess))
    assert "def describe_self(" in shown and "class ClockProcess(" in shown
    assert shown.count("# helpers/processes/basics.py") == 1


def test_fence_outgrows_backticks_inside():
    text = Source("x = '```'", "example.py")._repr_markdown_()
    assert text.startswith("````python\n") and text.endswith("\n````\n")


def test_show_file_shows_a_script():
    shown = repr(show_file(SCRIPTS / "daemon_script.py"))
    assert shown.startswith("# helpers/scripts/daemon_script.py\n")
    assert 'if __name__ == "__main__":' in shown


def test_bad_input_is_refused_clearly():
    with pytest.raises(TypeError, match="at least one"):
        show_source()
    with pytest.raises(TypeError, match="not int"):
        show_source(3)
    with pytest.raises(TypeError, match="not builtin_function_or_method"):
        show_source(len)
    with pytest.raises(ValueError, match="no source file"):
        show_source(eval("lambda: 0"))  # made at run time: no file holds its source
    with pytest.raises(ValueError, match=r"existing \.py file"):
        show_file(SCRIPTS / "missing.py")
    with pytest.raises(ValueError, match="non-empty"):
        Source("  ", "x.py")
