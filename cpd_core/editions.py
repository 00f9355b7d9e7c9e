"""Published editions: the executed chapters of one run, at any scale, with their provenance.

An *edition* is a folder ``editions/NAME/`` holding the executed notebook of each chapter
(``NAME.ipynb``, as papermill wrote it) and a ``manifest.json``: the scale and parameters of
every chapter, the commit, the machine and device, and the wall time per chapter. The book
renders an edition without recomputing it (``make book EDITION=NAME``), and its front page
says what each chapter shows (:func:`provenance_markdown`).

Command line (what the Makefile calls)::

    python -m cpd_core.editions make NAME --scale full [--param KEY VALUE ...] --chapters A.ipynb B.ipynb
    python -m cpd_core.editions check NAME
    python -m cpd_core.editions provenance build/notebooks [--edition NAME] > build/provenance.md
    python -m cpd_core.editions hide-injected NOTEBOOK.ipynb ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cpd_core.errors import InputError

EDITIONS = Path("editions")
MANIFEST_FORMAT = "cpd-edition/1"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    """The machine and device a run is on: CPU, cores, memory, GPU (if any), torch and Python."""
    import torch

    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return info


def notebook_parameters(path: Path) -> dict:
    """The parameters papermill injected into an executed notebook (empty: the notebook's defaults)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return dict(nb.metadata.get("papermill", {}).get("parameters", {}))


def hide_injected_parameters(path: Path) -> bool:
    """Collapse the cell papermill injects for explicit parameters (tag ``hide-input``), as the parameters cell is.

    Returns whether the notebook had such a cell.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    for cell in cells:
        if "hide-input" not in cell.metadata["tags"]:
            cell.metadata["tags"].append("hide-input")
    if cells:
        nbformat.write(nb, path)
    return bool(cells)


def _papermill_seconds(path: Path) -> float | None:
    """How long papermill took to execute the notebook (None: not executed by papermill)."""
    import nbformat

    return nbformat.read(path, as_version=4).metadata.get("papermill", {}).get("duration")


def make_edition(name: str, chapters: list[Path], scale: str = "book", params: dict | None = None,
                 root: Path = EDITIONS, log=print) -> dict:
    """Execute each chapter notebook (``.ipynb`` converted from ``notebooks/*.py``) into ``root/name/``.

    One chapter at a time (never two notebooks at once), with ``scale`` and ``params`` as papermill
    parameters; writes ``manifest.json`` after every chapter, so an interrupted run keeps what
    finished. An edition grows chapter by chapter: running some chapters into an existing edition
    replaces those and keeps the others, and each chapter's entry records its own commit, machine,
    scale and time (a long CPU run of one chapter and a GPU run of another can share an edition).
    Returns the manifest.
    """
    import papermill

    if not name or "/" in name or name.startswith("."):
        raise InputError(f"an edition needs a plain folder name, got {name!r}")
    out = Path(root) / name
    out.mkdir(parents=True, exist_ok=True)
    params = {"scale": scale, **(params or {})}
    previous = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    run = {"commit": _git("rev-parse", "--short", "HEAD"),
           "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "cpd_core", "notebooks")),
           "machine": machine()}
    manifest = {"format": MANIFEST_FORMAT, "name": name, "scale": scale, "parameters": params, **run,
                "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "chapters": dict(previous.get("chapters", {}))}
    for source in chapters:
        chapter = Path(source).stem
        target = out / f"{chapter}.ipynb"
        log(f"{chapter}: executing at scale {scale!r} with {params} -> {target}")
        start = time.perf_counter()
        papermill.execute_notebook(str(source), str(target), parameters=params, cwd=os.getcwd(),
                                   progress_bar=False, log_output=True)
        wall = time.perf_counter() - start
        hide_injected_parameters(target)
        finished = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        manifest["chapters"][chapter] = {"file": target.name, "wall_s": round(wall, 1), "scale": scale,
                                         "parameters": notebook_parameters(target), "sha256": _sha256(target),
                                         **run, "finished": finished}
        manifest["finished"] = finished
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        log(f"{chapter}: {wall / 60:.1f} min")
    return manifest


def chapter_run(manifest: dict, chapter: str) -> dict:
    """Commit, machine and time of one chapter of an edition (older manifests keep them at the top level)."""
    entry = manifest["chapters"][chapter]
    return {key: entry.get(key, manifest.get(key)) for key in ("commit", "dirty", "machine", "finished")}


def read_manifest(name: str, root: Path = EDITIONS) -> dict:
    path = Path(root) / name / "manifest.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in Path(root).glob("*/manifest.json"))
        raise InputError(f"no edition {name!r} in {root}/ (editions: {known or 'none'}); "
                         f"make one with `make edition NAME={name}`")
    return json.loads(path.read_text())


def check_edition(name: str, root: Path = EDITIONS) -> list[str]:
    """Problems of an edition (empty: its manifest matches its notebooks, and every notebook ran cleanly)."""
    import nbformat

    manifest = read_manifest(name, root)
    folder = Path(root) / name
    problems = []
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.append(f"manifest format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    listed = set(manifest.get("chapters", {}))
    present = {p.stem for p in folder.glob("*.ipynb")}
    problems += [f"{c}: listed in the manifest but missing" for c in sorted(listed - present)]
    problems += [f"{c}: a notebook the manifest does not list" for c in sorted(present - listed)]
    for chapter in sorted(listed & present):
        entry, path = manifest["chapters"][chapter], folder / f"{chapter}.ipynb"
        if _sha256(path) != entry.get("sha256"):
            problems.append(f"{chapter}: notebook differs from the manifest's sha256")
        if notebook_parameters(path) != entry.get("parameters"):
            problems.append(f"{chapter}: parameters {notebook_parameters(path)} != manifest {entry.get('parameters')}")
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if any(c.get("execution_count") is None and c.source.strip() for c in code):
            problems.append(f"{chapter}: cells that never ran")
        if any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])):
            problems.append(f"{chapter}: a cell raised an error")
    return problems


def provenance_markdown(notebooks: list[Path], edition: str | None = None, root: Path = EDITIONS) -> str:
    """The front page's table: for each chapter, the edition or build it shows, its scale and its parameters."""
    manifest = read_manifest(edition, root) if edition else None
    lines = ["| chapter | shows | scale | parameters set | run on | wall time |", "|---|---|---|---|---|---|"]
    for path in sorted(notebooks, key=lambda p: Path(p).stem):
        chapter = Path(path).stem
        params = notebook_parameters(path)
        scale = params.get("scale", "book")
        others = ", ".join(f"`{k}={v}`" for k, v in params.items() if k != "scale") or "—"
        entry = (manifest or {}).get("chapters", {}).get(chapter)
        if entry:
            run = chapter_run(manifest, chapter)
            where = f"edition `{edition}` (commit `{run['commit']}`, {run['finished'] or ''})"
            run_on = f"{run['machine']['device']}, {run['machine']['cores']} cores"
            wall = f"{entry['wall_s'] / 60:.1f} min"
        else:
            here = machine()
            seconds = _papermill_seconds(path)
            where, run_on = "this build", f"{here['device']}, {here['cores']} cores"
            wall = "—" if seconds is None else f"{seconds / 60:.1f} min"
        lines.append(f"| `{chapter}` | {where} | {scale} | {others} | {run_on} | {wall} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpd_core.editions", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="execute the chapters into editions/NAME/ with a manifest")
    mk.add_argument("name")
    mk.add_argument("--scale", default="book")
    mk.add_argument("--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="an explicit parameter (VALUE read as YAML: 10000, null, [1, 2])")
    mk.add_argument("--chapters", nargs="+", type=Path, required=True, help="converted .ipynb chapters")
    ck = sub.add_parser("check", help="check that an edition's manifest matches its notebooks")
    ck.add_argument("name")
    pv = sub.add_parser("provenance", help="the front page's provenance table (markdown) for built notebooks")
    pv.add_argument("folder", type=Path)
    pv.add_argument("--edition", default=None)
    hide = sub.add_parser("hide-injected", help="collapse papermill's injected-parameters cell")
    hide.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "make":
            import yaml

            make_edition(args.name, args.chapters, args.scale, {k: yaml.safe_load(v) for k, v in args.param})
        elif args.command == "hide-injected":
            for path in args.notebooks:
                hide_injected_parameters(path)
        elif args.command == "check":
            problems = check_edition(args.name)
            for p in problems:
                print(f"edition {args.name}: {p}", file=sys.stderr)
            if problems:
                return 1
            print(f"edition {args.name}: manifest matches its {len(read_manifest(args.name)['chapters'])} notebooks")
        else:
            sys.stdout.write(provenance_markdown(sorted(args.folder.glob("*.ipynb")), args.edition or None))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
