"""Sphinx extension of the book: an "Open in Colab" box under the title of every chapter page.

A chapter page is ``book/NAME.md`` with a notebook ``notebooks/NAME.py``; its Colab notebook is
``colab/NAME.ipynb`` (``cpd_core.colab``). The link needs the repository's public GitHub address,
``repository.url`` (and ``repository.branch``) in ``_config.yml``; a build without one says where the
notebook is instead of linking it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def colab_box(name: str, url: str, branch: str) -> str:
    """The MyST markdown of the box for chapter ``name``."""
    from cpd_core.colab import colab_link

    where = f"`colab/{name}.ipynb`"
    if url:
        opener = f"[**Open in Colab**]({colab_link(name, url, branch)}) — {where}"
    else:
        opener = (f"{where} of the repository (this build names no public repository — `repository.url` in "
                  "`_config.yml` — so there is no link: in Colab, *File -> Open notebook -> GitHub* or *Upload*)")
    return (":::{admonition} Re-execute this chapter on a GPU\n:class: tip\n"
            f"{opener}: this chapter's notebook with a setup cell that installs the book's pinned stack "
            "around the runtime's own torch and runs the chapter at `scale = \"full\"`. To spread the work over "
            "a cluster instead: {doc}`cluster`.\n:::\n")


def _insert(app, docname: str, source: list[str]) -> None:
    if not docname.startswith("book/"):
        return
    name = docname.split("/", 1)[1]
    if not (ROOT / "notebooks" / f"{name}.py").is_file():
        return
    options = app.config.html_theme_options or {}
    box = colab_box(name, options.get("repository_url", ""), options.get("repository_branch", "") or "main")
    lines = source[0].splitlines(keepends=True)
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title is None:
        return
    source[0] = "".join(lines[:title + 1]) + "\n" + box + "".join(lines[title + 1:])


def setup(app):
    app.connect("source-read", _insert)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
