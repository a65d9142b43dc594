"""Sphinx extension: small fixes to the HTML that Jupyter Book 1 writes.

sphinx-thebe adds its inline configuration script twice to every page under
Sphinx 7.4 (its ``env-before-read-docs`` handler registers the script both with
the application and with the already-created builder). The second copy
re-declares ``const THEBE_JS_URL`` and raises a SyntaxError in the browser's
console (sphinx-togglebutton's inline script is doubled the same way). This drops
exact duplicate script entries from each page, after every other extension has
added its own.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    filename = getattr(script, "filename", script) or ""  # None and "" both mean an inline script
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts, priority=10_000)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
