"""Sphinx extension: small fixes to the HTML that Jupyter Book 1 writes.

sphinx-thebe adds its inline configuration script twice to every page under
Sphinx 7.4 (its ``env-before-read-docs`` handler registers the script both with
the application and with the already-created builder). The second copy
re-declares ``const THEBE_JS_URL`` and raises a SyntaxError in the browser's
console (sphinx-togglebutton's inline script is doubled the same way). This drops
exact duplicate script entries from each page, after every other extension has
added its own.

It also puts a link to the same page of the other edition (English, 中文) at the top of every
page. The Chinese edition is built into ``_build/html/zh/``, so from an English page the link
goes down into ``zh/``, and from a Chinese page one level up (``other_edition_*`` settings).
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


def other_edition_href(pagename: str, prefix: str, up: int) -> str:
    """The relative URL, from page ``pagename``, of the same page in the other edition."""
    depth = pagename.count("/")
    return "../" * (depth + up) + prefix + pagename + ".html"


def link_other_edition(app, pagename, templatename, context, doctree) -> None:
    label = app.config.other_edition_label
    if not label or "body" not in context:
        return
    href = other_edition_href(pagename, app.config.other_edition_prefix, app.config.other_edition_up)
    lang = app.config.other_edition_lang
    link = (
        f'<p class="other-edition"><a class="other-edition-link" href="{href}" '
        f'hreflang="{lang}" lang="{lang}">{label}</a></p>\n'
    )
    context["body"] = link + context["body"]


def setup(app):
    app.add_config_value("other_edition_label", "", "html")
    app.add_config_value("other_edition_lang", "", "html")
    app.add_config_value("other_edition_prefix", "", "html")
    app.add_config_value("other_edition_up", 0, "html")
    app.connect("html-page-context", drop_duplicate_scripts, priority=10_000)
    app.connect("html-page-context", link_other_edition)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
