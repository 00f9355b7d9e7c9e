"""Install the book's pinned stack into a Colab runtime (or any fresh Python 3.11+ environment) around its torch.

Run from the repository root, before anything of the project is imported::

    python scripts/colab_setup.py            # or, inside a notebook: import colab_setup; colab_setup.setup()
    python scripts/colab_setup.py --dry-run  # print the plan and the pip commands only

What it does, in order:

1. **Python.** The pins need Python >= 3.11 (numpy 2.4, matgl); 3.11 is what the book is built with,
   3.12 what Colab ships.
2. **torch.** A Colab runtime comes with a CUDA build of torch. It is kept when its version lies in
   :data:`TORCH_RANGE` — the versions every model stack of ``requirements.txt`` accepts (torchani 2.9:
   ``<= 2.13``; so3krates-torch: ``>= 2.6``) — so the GPU build that matches the runtime's CUDA driver
   stays. Otherwise (none installed, or outside the range) it installs the project's ``torch==2.13.0``.
3. **The pins.** ``pip install -r requirements.txt`` with torch held at the chosen version by a
   constraints file (nothing in the list may move it), then the project itself (``-e .``).
4. **QM9.** Loads all 130,831 molecules once through ``qm9pack`` (``cpd_core.datasets.load_qm9``), so
   the chapters start from the cache.
5. **Stale modules.** Packages the running kernel imported before the installs replaced them (a kernel
   imports some itself: in the fresh Python 3.12 test, jupyter_client's dateutil) keep their old code
   until a restart. :func:`setup` lists them; on
   Colab it then restarts the runtime (choose *Runtime -> Run all* once more: the second pass finds
   everything installed and takes seconds).

A stamp (``.colab-setup.json`` in the repository root) records what was installed for which
requirements, Python and torch; a run that finds the same stamp skips steps 2-4.

Only the standard library (and pip's own ``packaging``) is used here: nothing of the project can be
imported before this has run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

try:  # pip vendors packaging; a plain venv has pip
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:  # pragma: no cover - depends on the interpreter
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: torch versions every pinned model stack accepts (tests/test_colab.py checks it against the installed
#: packages' metadata): torchani 2.9.0 ``torch<=2.13,>=2.0``, so3krates-torch 0.2.1 ``torch>=2.6.0``,
#: chgnet 0.4.2 ``torch>=2.4.1``, lightning 2.6.6 ``torch>=2.1.0``.
TORCH_RANGE = ">=2.6,<=2.13"
#: what is installed when the runtime's torch is missing or outside :data:`TORCH_RANGE` (the Makefile's pin).
TORCH_PIN = "torch==2.13.0"
PYTHON_MIN = (3, 11)
STAMP = ".colab-setup.json"


def torch_plan(installed: str | None, allowed: str = TORCH_RANGE) -> tuple[str, str]:
    """What to do about torch: ``("keep", "torch==<installed>")`` or ``("install", TORCH_PIN)``.

    The local label of a build (``+cu126``) does not count for the range and is kept in the pin.

    >>> torch_plan("2.9.0+cu126")
    ('keep', 'torch==2.9.0+cu126')
    >>> torch_plan("2.14.1")
    ('install', 'torch==2.13.0')
    >>> torch_plan(None)
    ('install', 'torch==2.13.0')
    """
    if installed is None:
        return "install", TORCH_PIN
    if Version(Version(installed).public) in SpecifierSet(allowed):
        return "keep", f"torch=={installed}"
    return "install", TORCH_PIN


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None (read fresh from disk, not from a cache)."""
    import importlib.metadata as metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def imported_versions(modules=None) -> dict[str, str]:
    """``{top-level module: version of its distribution on disk}`` for the modules this process imported."""
    import importlib.metadata as metadata

    modules = sys.modules if modules is None else modules
    dists = metadata.packages_distributions()
    out = {}
    for name in modules:
        if "." not in name and name in dists:
            version = installed_version(dists[name][0])
            if version is not None:
                out[name] = version
    return out


def stale_modules(before: dict[str, str], modules=None) -> list[str]:
    """Modules imported before the installs (``before``: :func:`imported_versions` then) whose distribution
    the installs replaced; their old code stays in the process until it restarts.

    Comparing the distributions on disk before and after (not a module's ``__version__``, whose format
    varies) means a run that installs nothing finds nothing stale, so a restart cannot repeat itself.
    """
    now = imported_versions(modules)
    return [f"{m} {v} -> {now[m]}" for m, v in sorted(before.items()) if m in now and now[m] != v]


def _fingerprint(torch_spec: str) -> dict:
    reqs = (ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    return {"requirements": hashlib.sha256(reqs).hexdigest(), "python": sys.version.split()[0],
            "torch": torch_spec}


def commands(torch_spec: str, action: str, constraints: Path) -> list[list[str]]:
    """The pip commands of steps 2-3 (``constraints`` holds ``torch_spec``)."""
    pip = [sys.executable, "-m", "pip", "install", "--progress-bar", "off"]
    out = [pip + [torch_spec]] if action == "install" else []
    out.append(pip + ["-r", str(ROOT / "requirements.txt"), "-c", str(constraints)])
    out.append(pip + ["--no-deps", "-e", str(ROOT)])
    return out


def _run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def setup(dry_run: bool = False, qm9: bool = True, restart: bool | None = None) -> dict:
    """Steps 1-5 (see the module's text); returns what was found and done.

    Parameters
    ----------
    dry_run : bool
        Print the plan and the commands, install nothing.
    qm9 : bool
        Load QM9 once at the end (step 4).
    restart : bool, optional
        Restart the process when modules it imported were replaced (default: on Colab only; elsewhere
        a ``RuntimeError`` names them).
    """
    if sys.version_info[:2] < PYTHON_MIN:
        raise RuntimeError(f"the pinned stack needs Python >= {'.'.join(map(str, PYTHON_MIN))}, "
                           f"this is {sys.version.split()[0]}")
    found = installed_version("torch")
    action, spec = torch_plan(found)
    print(f"Python {sys.version.split()[0]}; torch on this runtime: {found or 'none'} -> {action} {spec} "
          f"(accepted: {TORCH_RANGE})", flush=True)
    if action == "install" and found is not None:
        print(f"  torch {found} lies outside {TORCH_RANGE} (torchani 2.9 needs <= 2.13): replacing it; "
              "torchvision/torchaudio of this runtime will no longer match it (the book uses neither)", flush=True)
    stamp = ROOT / STAMP
    pinned = spec if action == "keep" else TORCH_PIN
    want = _fingerprint(pinned)
    done = json.loads(stamp.read_text()) if stamp.exists() else None
    constraints = ROOT / "build" / "colab-constraints.txt"
    cmds = commands(spec, action, constraints)
    report = {"python": want["python"], "torch_found": found, "torch": pinned, "action": action}
    if dry_run:
        for cmd in cmds:
            print("$", " ".join(cmd))
        return report | {"commands": cmds}
    before = imported_versions()
    if done == want:
        print(f"already set up ({stamp.name}): nothing to install", flush=True)
    else:
        constraints.parent.mkdir(parents=True, exist_ok=True)
        constraints.write_text(pinned + "\n")
        for cmd in cmds:
            _run(cmd)
        if qm9:
            _run([sys.executable, "-c", "from cpd_core.datasets import load_qm9; d = load_qm9(n=None); "
                                        "print(f'QM9: {len(d):,} molecules')"])
        stamp.write_text(json.dumps(want, indent=1) + "\n")
    if str(ROOT) not in sys.path:  # an editable install is seen by new processes only
        sys.path.insert(0, str(ROOT))
    stale = stale_modules(before)
    report["stale"] = stale
    if stale:
        on_colab = "google.colab" in sys.modules
        if restart if restart is not None else on_colab:
            print("replaced after this runtime imported them: " + ", ".join(stale) +
                  "\nrestarting the runtime: choose Runtime -> Run all once more", flush=True)
            os.kill(os.getpid(), 9)
        raise RuntimeError("set up; now restart the kernel and run again (the second run installs nothing): "
                           "these modules were replaced after this kernel imported them: " + ", ".join(stale))
    print("set up: " + ", ".join(f"{d} {installed_version(d)}" for d in ("torch", "numpy", "torchani", "mace-torch")),
          flush=True)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the pip commands only")
    parser.add_argument("--no-qm9", action="store_true", help="do not load QM9 at the end")
    args = parser.parse_args(argv)
    setup(dry_run=args.dry_run, qm9=not args.no_qm9, restart=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
