"""Show a helper's source in a cell's output, the same in JupyterLab, Binder and the HTML book.

Used by every chapter that hands a function from ``helpers/`` to a child process.

``show_source(describe_self)`` returns a :class:`Source`. Jupyter displays it as a
highlighted Python block (its ``text/markdown`` form: a fenced code block, which
JupyterLab, Binder and MyST-NB all render); its plain text (``repr``) is the source
itself. nbval compares both with the stored output, so the code a chapter shows is
the code that ran: change a shown helper, and its chapter fails until re-executed.
"""

from __future__ import annotations

import inspect
import textwrap
import types
from pathlib import Path

__all__ = ["Source", "show_file", "show_source"]

_ROOT = Path(__file__).resolve().parents[2]  # the repository: helpers/ lives in it


class Source:
    """Python source text with a display form: a fenced, highlighted block."""

    def __init__(self, text: str, origin: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("Source needs non-empty text")
        self.origin = origin
        self.text = f"# {origin}\n{text.rstrip()}\n"

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        # Inline styles: the colours survive JupyterLab's sanitizer and need no stylesheet.
        formatter = HtmlFormatter(noclasses=True, nobackground=False, style="default")
        return highlight(self.text, PythonLexer(), formatter)

    def _repr_markdown_(self) -> str:
        fence = "```"
        while fence in self.text:  # a fence longer than any run of backticks inside
            fence += "`"
        return f"{fence}python\n{self.text}{fence}\n"

    def __repr__(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def _origin(path: str | Path) -> str:
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(_ROOT).as_posix()
    except ValueError:
        return resolved.name


def show_source(*objects: object) -> Source:
    """The source of each function, class or method given, one after another, from ``helpers/``."""
    if not objects:
        raise TypeError("show_source() needs at least one function or class")
    chunks, origins = [], []
    for obj in objects:
        target = inspect.unwrap(obj) if callable(obj) else obj
        if not isinstance(target, (types.FunctionType, types.MethodType, type)):
            raise TypeError(f"show_source() takes functions, methods and classes, not {type(obj).__name__}")
        try:
            chunks.append(textwrap.dedent(inspect.getsource(target)).rstrip())
            path = inspect.getsourcefile(target)
        except (OSError, TypeError) as error:  # defined in a notebook cell, or built in
            raise ValueError(f"no source file for {obj!r}: show_source is for code in helpers/") from error
        if path is None:
            raise ValueError(f"no source file for {obj!r}: show_source is for code in helpers/")
        origin = _origin(path)
        if origin not in origins:
            origins.append(origin)
    return Source("\n\n\n".join(chunks), ", ".join(origins))


def show_file(path: str | Path) -> Source:
    """A whole Python file, such as a script a chapter runs as a subprocess."""
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        raise ValueError(f"show_file() takes an existing .py file, not {str(path)!r}")
    return Source(file.read_text(), _origin(file))
