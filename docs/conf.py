"""Sphinx configuration of the fastmf documentation.

Build (offline, warnings are errors; what .ci/run does)::

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -b html docs docs/_build/html

Why Sphinx (and not MkDocs)
---------------------------
fastmf's docstrings are numpydoc with reStructuredText inside: ``.. math::`` blocks,
``:math:`` roles and ``:class:``/``:func:``/``:meth:`` cross-references.  Sphinx with
``numpydoc`` parses them as reStructuredText, so the maths renders (MathJax) and the
roles become links.  MkDocs' mkdocstrings-python (griffe) reads numpy-style *sections*
but renders their text as Markdown: ``.. math::`` blocks and ``:class:`` roles come out
as literal text.  The hand-written pages are Markdown; MyST-Parser reads them, with
``dollarmath`` for ``$...$`` / ``$$...$$`` maths in Markdown.  So one generator renders
both kinds of source properly: Sphinx + numpydoc + MyST.

Offline
-------
No intersphinx (no inventories fetched from the network) and MathJax served from the
built site itself (``sphinx-mathjax-offline`` copies MathJax 3 into ``_static``), so the
build and the pages need no network.  Without that package the pages load MathJax from
Sphinx's default CDN.
"""

from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# the checkout, not whichever fastmf is installed
sys.path.insert(0, os.path.dirname(HERE))

import fastmf  # noqa: E402

project = "fastmf"
author = "fastmf developers"
copyright = "fastmf developers"
release = fastmf.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",  # numpydoc's method tables
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]
if importlib.util.find_spec("sphinx-mathjax-offline") is not None:
    extensions.append("sphinx-mathjax-offline")

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "README.md",  # notes for maintainers of these docs, not a page
]

# --- offline: no cross-project inventories --------------------------------------------
intersphinx_mapping: dict = {}

# --- autodoc / numpydoc ----------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_default_options = {"members": True, "show-inheritance": True}
autosummary_generate = False
numpydoc_show_class_members = True
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# numpydoc's docstring validation is not run at build time (tests/test_docs.py checks
# that every public name has a docstring).

# --- MyST (Markdown pages) -------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fastmf {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # the theme must not fetch anything: no version switcher, no icon links to the web
    "icon_links": [],
    "header_links_before_dropdown": 4,
}
html_show_sourcelink = False


# ``architecture.md`` and ``stopping.md`` are written on other branches.  index.md lists
# them in its toctree like any page; until a file exists its entry is dropped from the
# source here (a missing toctree entry is a warning, i.e. an error with -W).  Any other
# missing page still fails the build.
PAGES_FROM_OTHER_BRANCHES = ("architecture", "stopping")


def _drop_pages_not_yet_written(app, docname, source):
    if docname != "index":
        return
    for page in PAGES_FROM_OTHER_BRANCHES:
        if not os.path.exists(os.path.join(HERE, page + ".md")):
            source[0] = source[0].replace(f"\n{page}\n", "\n")


def _drop_object_base(app, name, obj, options, bases):
    # "Bases: object" says nothing; keep the informative ones (exceptions, mixins)
    bases[:] = [b for b in bases if b is not object]


# Docstrings name objects where they are defined (``fastmf.model.MatrixFactorization``,
# ``fastmf.solvers.newton.newton_cg``) or by their short name (``Ratings``); the API pages
# document them under their public names (``fastmf.MatrixFactorization``).  Resolve such
# references to the public entry: first by the object's defining module and qualified
# name, then by a dotted suffix that matches exactly one documented object.
_aliases: dict[str, str] | None = None


def _public_name(app, target):
    global _aliases
    domain = app.env.get_domain("py")
    if _aliases is None:
        import importlib

        _aliases = {}
        for name in sorted(domain.objects, key=len):  # shortest public path wins
            obj = None
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                try:
                    for attr in parts[i:]:
                        obj = getattr(obj, attr)
                except AttributeError:
                    obj = None
                break
            qual = getattr(obj, "__qualname__", None)
            mod = getattr(obj, "__module__", None)
            if qual and mod:
                _aliases.setdefault(f"{mod}.{qual}", name)
    if target in _aliases:
        return _aliases[target]
    matches = [n for n in domain.objects if n.endswith("." + target.lstrip("~."))]
    if len(matches) == 1:
        return matches[0]
    return None


def _resolve_to_public(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    name = _public_name(app, node["reftarget"])
    if name is None or name == node["reftarget"]:
        return None
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], name, node, contnode)


def setup(app):
    app.connect("missing-reference", _resolve_to_public)
    app.connect("source-read", _drop_pages_not_yet_written)
    app.connect("autodoc-process-bases", _drop_object_base)
