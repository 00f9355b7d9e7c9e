"""The front page's generated parts: the scorecard's summary figure, the main findings and every chapter's status.

``make book`` writes them into ``build/front/`` from the executed chapters (``python -m cpd_core.front
build/notebooks build/front``); ``book/index.md`` includes them. Kept apart from
:mod:`cpd_core.scorecard`, which the chapters import: a change here re-executes no chapter.
"""

from __future__ import annotations

import re
from pathlib import Path

from cpd_core.errors import InputError
from cpd_core.scorecard import VERDICTS, collect, display_table, scorecard, verdict_counts


def _short(text: str, width: int) -> str:
    """The first clause of ``text``, cut to ``width`` characters."""
    first = re.split(r"[,;(]", text, maxsplit=1)[0].strip()
    return first if len(first) <= width else first[:width - 1] + "…"


def _title(notebook: Path) -> str:
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem


def _scale(notebook: Path) -> str:
    """The ``scale`` a chapter ran at, with any other parameter papermill injected, e.g. ``"book (n_molecules =
    10000)"``: what :func:`cpd_core.editions.notebook_parameters` reads, as the provenance table shows it."""
    from cpd_core.editions import notebook_parameters

    params = notebook_parameters(notebook)
    others = [f"{k} = {v}" for k, v in params.items() if k != "scale"]
    scale = params.get("scale", "book")
    return f"{scale} ({', '.join(others)})" if others else scale


def _glued_png(notebook: Path, name: str) -> bytes | None:
    import base64

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            key = meta.get("mime_prefix", "") + "image/png"
            if meta.get("name") == name and key in out.get("data", {}):
                return base64.b64decode(out["data"][key])
    return None


def front_page(folder, out) -> Path:
    """Write the front page's generated parts into ``out``: ``summary.png`` (the scorecard's figure, as glued by
    its executed notebook) and ``findings.md`` (the main findings with their verdicts, and every chapter's
    status), both from the executed chapters in ``folder``. Returns the markdown file."""
    folder, out = Path(folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = _glued_png(folder / "scorecard.ipynb", "summary_figure") if (folder / "scorecard.ipynb").exists() else None
    if png is None:
        raise InputError(f"{folder / 'scorecard.ipynb'} holds no summary figure: execute the scorecard chapter first")
    (out / "summary.png").write_bytes(png)
    found = collect(folder)
    card = scorecard(found)
    shown = display_table(card)
    lines = ["| claim (paper version) | paper | what we measured | ours [95 % interval] | n | verdict |",
             "|---|---|---|---|---|---|"]
    for (_, r), (_, raw) in zip(shown.iterrows(), card.iterrows()):
        what = raw["what"] if len(raw["what"]) <= 60 else raw["what"][:59] + "…"
        lines.append(f"| {r['statement']} ({r['version']}) | {r['paper']} | {what or '—'} | {r['ours']} | {r['n']} | "
                     f"{r['verdict']}{' (' + _short(raw['why'], 60) + ')' if raw['verdict'] == 'not comparable' else ''} |")
    counts = verdict_counts(card)
    every = card["verdict"].value_counts()
    lines += ["", "Of the paper's " + f"{card['claim'].nunique()} abstract claims, each counted once by its best "
              "measurement: " + ", ".join(f"{k} {v}" for v, k in ((v, counts[v]) for v in VERDICTS)) +
              f". Of the {len(card)} rows: " + ", ".join(f"{int(every.get(v, 0))} {v}" for v in VERDICTS) +
              ". The scorecard chapter gives each row's reason and what exactly was measured.", "",
              "| chapter | scale | claims measured here | verdicts |", "|---|---|---|---|"]
    root = Path(__file__).resolve().parent.parent
    for name in dict.fromkeys(re.findall(r"file: build/notebooks/(\w+)", (root / "_toc.yml").read_text())):
        nb = folder / f"{name}.ipynb"
        if not nb.exists() or name == "scorecard":
            continue
        _, ms = found.get(name, ("", []))
        mine = card[card["chapter"] == name]
        verdicts = mine["verdict"].value_counts()
        lines.append(f"| {{doc}}`{_title(nb)} <../build/notebooks/{name}>` | {_scale(nb)} | "
                     f"{', '.join(dict.fromkeys(m.claim for m in ms)) or '—'} | "
                     f"{'; '.join(f'{k} {v}' for v, k in verdicts.items()) or '—'} |")
    md = out / "findings.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cpd_core.front", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="folder of executed chapter notebooks (build/notebooks)")
    parser.add_argument("out", help="output folder (build/front)")
    args = parser.parse_args(argv)
    print(front_page(args.folder, args.out))
    return 0

__all__ = ["front_page", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
