"""The documentation site's API pages cover the public API, and every public name has a
docstring (the site itself is built by .ci/run: ``sphinx-build -W``)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import fastmf

DOCS = Path(__file__).resolve().parents[1] / "docs"

# public module -> its page under docs/api (each page is ``.. automodule::`` of the module,
# whose members are the module's __all__)
PUBLIC_MODULES = {
    "fastmf": "fastmf",
    "fastmf.model_selection": "model_selection",
    "fastmf.metrics": "metrics",
    "fastmf.datasets": "datasets",
    "fastmf.reference": "reference",
    "fastmf.solvers": "solvers",
    "fastmf.exceptions": "exceptions",
    "fastmf.fitted": "fitted",
    "fastmf.serving": "serving",
    "fastmf.persistence": "persistence",
    "fastmf.distributed": "distributed",
    "fastmf.plot": "plot",
}


def public_names(modname):
    mod = importlib.import_module(modname)
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
            continue  # submodules have pages of their own; constants need no docstring
        yield name, obj


@pytest.mark.parametrize("modname", sorted(PUBLIC_MODULES))
def test_api_page_documents_the_module(modname):
    page = DOCS / "api" / f"{PUBLIC_MODULES[modname]}.rst"
    assert page.is_file(), f"no API page for {modname}"
    assert f".. automodule:: {modname}\n" in page.read_text(encoding="utf-8")
    index = (DOCS / "api" / "index.rst").read_text(encoding="utf-8")
    assert f"\n   {PUBLIC_MODULES[modname]}\n" in index, f"{page.name} is not in docs/api/index.rst"


@pytest.mark.parametrize("modname", sorted(PUBLIC_MODULES))
def test_public_names_have_docstrings(modname):
    missing = [name for name, obj in public_names(modname) if not inspect.getdoc(obj)]
    assert not missing, f"{modname}: public names without a docstring: {missing}"


def test_every_page_is_in_a_toctree():
    """Markdown pages under docs/ are reachable from the index (sphinx -W fails otherwise;
    this says which, without building)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in
                     [DOCS / "index.md", DOCS / "user_guide" / "index.md"])
    for page in sorted(DOCS.glob("*.md")):
        if page.name in ("index.md", "README.md"):
            continue
        assert f"\n{page.stem}\n" in text, f"docs/{page.name} is not in the toctree of docs/index.md"
    for page in sorted((DOCS / "user_guide").glob("*.md")):
        if page.name != "index.md":
            assert f"\n{page.stem}\n" in text, f"docs/user_guide/{page.name} is not in its toctree"


def test_version_is_exported():
    assert isinstance(fastmf.__version__, str)
