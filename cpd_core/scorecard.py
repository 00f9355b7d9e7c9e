"""The reproduction scorecard: each chapter records what it measured for the paper's claims; one page compares.

A chapter notebook ends with :func:`record`: a list of :class:`Measurement`, each keyed by a claim
of :data:`CLAIMS` (the paper's numbers, both versions). The measurements are glued into the
executed notebook (hidden), so they travel with it into ``build/notebooks/`` and into published
editions; the scorecard page reads them back (:func:`read_measurements`) and computes each claim's
verdict from the numbers alone (:func:`verdict`). Nothing on the scorecard is typed by hand but the
paper's own numbers and what each claim means.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cpd_core.errors import InputError
from cpd_core.paper import paper_value

#: Glue-name prefix of a chapter's measurements (``scorecard_<chapter>``).
PREFIX = "scorecard_"


@dataclass(frozen=True)
class Measurement:
    """One number this book measured for one claim of the paper.

    Attributes
    ----------
    claim : str
        Key of :data:`CLAIMS`.
    value : float
        Our estimate: an R², a paired difference, an accuracy, or for a range claim the smallest value.
    lo, hi : float
        Its 95 % interval (for a range claim: ``lo`` = ``value`` = the smallest, ``hi`` = the largest value
        over the models measured). NaN where there is none.
    n : int
        Molecules (or structures) behind the number.
    what : str
        What exactly was measured: model, block, probe, split (shown beside the number).
    comparable : bool
        False where the measurement is not the paper's quantity (a stand-in model, another training
        budget, an unknown protocol detail); ``reason`` says why.
    reason : str
        Why it is not comparable, or a caveat.
    """

    claim: str
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0
    what: str = ""
    comparable: bool = True
    reason: str = ""

    def as_dict(self) -> dict:
        return {k: (None if math.isnan(v) else round(v, 4)) if isinstance(v, float) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        d = {k: (math.nan if v is None and k in ("value", "lo", "hi") else v) for k, v in d.items()}
        return cls(**d)


def record(chapter: str, measurements, scale: str = "") -> None:
    """Glue ``measurements`` into the executing notebook as ``scorecard_<chapter>`` (hidden; nothing is displayed).

    ``scale`` is the chapter's named scale (``"book"``, ``"full"``), shown beside each number.
    Raises :class:`~cpd_core.errors.InputError` for a claim key that :data:`CLAIMS` does not know.
    """
    from cpd_core.report import glue

    measurements = list(measurements)
    unknown = [m.claim for m in measurements if m.claim not in CLAIMS]
    if unknown:
        raise InputError(f"unknown scorecard claim(s) {unknown}; claims: {sorted(CLAIMS)}")
    glue(PREFIX + chapter, json.dumps({"scale": scale, "measurements": [m.as_dict() for m in measurements]}))


def read_measurements(notebook) -> dict[str, tuple[str, list[Measurement]]]:
    """Chapter → (its scale, its recorded measurements), from one executed notebook (``{}`` if it recorded none)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name", "")
            if not name.startswith(PREFIX):
                continue
            meta = out["metadata"]["scrapbook"]
            text = out.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            payload = json.loads(ast.literal_eval(text))
            found[name[len(PREFIX):]] = (payload.get("scale", ""),
                                         [Measurement.from_dict(d) for d in payload["measurements"]])
    return found


# The claims are filled in by the scorecard's own section below.
CLAIMS: dict = {}


@dataclass(frozen=True)
class Claim:
    """One statement of the paper, with its number(s) and the rule that turns a measurement into a verdict.

    Attributes
    ----------
    key : str
    version : str
        ``"v1"``, ``"v2"`` or ``"v1, v2"``: the version(s) of arXiv 2603.03155 whose abstract states it.
    statement : str
    paper : float or tuple of float
        The paper's number, or its range ``(low, high)``.
    kind : {"value", "range", "null", "not above", "sign"}
        ``value``: our interval should contain the paper's number; ``range``: our range over models should
        overlap the paper's; ``null``: the paper states an absence (our interval should contain ``ref``);
        ``not above``: the paper states that something does not happen (our interval should not lie above
        ``ref``); ``sign``: the paper states a direction without a number (``paper`` is ``"+"`` or ``"-"``).
    ref : float
        The reference a *direction* is read against (0 for an R² or a difference, 0.5 for a pairwise accuracy).
    chapter : str
        The chapter that measures it.
    """

    key: str
    version: str
    statement: str
    paper: object
    kind: str = "value"
    ref: float = 0.0
    chapter: str = ""
    extra: dict = field(default_factory=dict)


P = paper_value


def _diff(a: tuple, b: tuple) -> float:
    """The paper's ridge R²_geom of ``a`` minus that of ``b`` (each ``(representation, target)``), to 3 decimals."""
    return round(P("r2_geom", a[0], a[1], "ridge") - P("r2_geom", b[0], b[1], "ridge"), 3)


def _range(claim: str, representation: str, target: str, probe: str) -> tuple[float, float]:
    """The paper's range ``(low, high)`` of a claim stated as one (``<claim>_low``, ``<claim>_high``)."""
    return P(f"{claim}_low", representation, target, probe), P(f"{claim}_high", representation, target, probe)


def _claims(*claims: Claim) -> dict:
    return {c.key: c for c in claims}


#: Every number (or stated direction) of the two versions' abstracts, and the chapter that measures it.
#: v1: arXiv 2603.03155v1 (March 2026); v2: the revised version (task alignment, isomers).
CLAIMS.update(_claims(
    Claim("mace_gap_ridge", "v1", "MACE: geometry linearly accessible after composition removal, gap R²_geom",
          P("r2_geom", "MACE", "gap", "ridge"), chapter="model_gradient"),
    Claim("ani_gap_ridge", "v1", "ANI-2x's descriptor: gap R²_geom under ridge",
          P("r2_geom", "ANI-2x", "gap", "ridge"), chapter="ani2x_aev"),
    Claim("ani_gap_mlp", "v1", "ANI-2x's descriptor: gap R²_geom under an MLP",
          P("r2_geom", "ANI-2x", "gap", "mlp"), chapter="ani2x_aev"),
    Claim("model_ordering", "v1", "a disentanglement gradient: tensor-product equivariant above handcrafted "
          "(gap R²_geom, paired difference)", "+", kind="sign", chapter="model_gradient"),
    Claim("mace_routing_dipole", "v1", "MACE routes the dipole to L = 1: R²_geom(L1) − R²_geom(L0) = 0.59 − 0.38",
          _diff(("MACE L1", "dipole"), ("MACE L0", "dipole")), chapter="irreps_routing"),
    Claim("mace_routing_gap", "v1", "MACE routes the gap to L = 0: R²_geom(L0) − R²_geom(L1) = 0.76 − 0.34",
          _diff(("MACE L0", "gap"), ("MACE L1", "gap")), chapter="irreps_routing"),
    Claim("visnet_no_routing", "v1", "ViSNet does not route the dipole to L = 1: R²_geom(L1) − R²_geom(L0) not "
          "above 0", 0.0, kind="not above", chapter="irreps_routing"),
    Claim("gbt_inflation", "v1", "trees on the residual read a purely compositional target: R² 0.68–0.95",
          _range("r2_geom_tree_inflation", "compositional target", "-", "gbt"), kind="range",
          chapter="composition_bases"),
    Claim("sample_efficiency", "v1", "linearly disentangled representations are more sample-efficient under "
          "linear probing (rank correlation over models)", "+", kind="sign", chapter="sample_efficiency"),
    Claim("crystal_gradient", "v1", "the disentanglement gradient on Materials Project crystals", "+", kind="sign",
          chapter="crystals"),
    Claim("trained_range", "v2", "networks trained on QM9 (gap or energy): gap R²_geom 0.081–0.533",
          _range("r2_geom_trained", "trained on QM9", "gap", "ridge"), kind="range", chapter="task_alignment"),
    Claim("gap_trained_range", "v2", "gap-trained networks: gap R²_geom 0.44–0.53",
          _range("r2_geom_gap_trained", "gap-trained", "gap", "ridge"), kind="range", chapter="task_alignment"),
    Claim("painn_alignment", "v2", "PaiNN gap-trained − energy-trained, gap R²_geom: 0.53 − 0.31",
          _diff(("PaiNN gap-trained", "gap"), ("PaiNN energy-trained", "gap")), chapter="task_alignment"),
    Claim("mace_alignment", "v2", "MACE gap-trained − energy-trained, gap R²_geom: 0.44 − 0.08",
          _diff(("MACE gap-trained", "gap"), ("MACE energy-trained", "gap")), chapter="task_alignment"),
    Claim("mace_mp0_gap", "v2", "MACE-MP-0 (energy-trained foundation model): gap R²_geom",
          P("r2_geom", "MACE-MP-0", "gap", "ridge"), chapter="model_gradient",
          extra={"unavailable": "MACE-MP-0's weights need a download (no network here)"}),
    Claim("isomer_accuracy", "v2", "same-formula isomers: pairwise gap ordering from the geometric residual",
          P("isomer_accuracy", "-"), ref=0.5, chapter="isomers"),
    Claim("isomer_composition_chance", "v2", "same-formula isomers: composition alone at chance", 0.5, kind="null",
          ref=0.5, chapter="isomers"),
))


# --- verdicts ------------------------------------------------------------------------------------------

#: The verdicts, best first.
VERDICTS = ("reproduced", "reproduced in direction only", "not reproduced", "not comparable")


def _side(x: float, ref: float) -> int:
    return 0 if math.isnan(x) else (1 if x > ref else -1 if x < ref else 0)


def direction(claim: Claim, m: Measurement) -> str:
    """Whether our interval agrees with the direction the paper states: ``"agrees"``, ``"opposite"``, or
    ``"not resolved"`` (our interval includes the reference)."""
    if claim.kind == "null":
        return "agrees" if m.lo <= claim.ref <= m.hi else "opposite"
    if claim.kind == "not above":
        return "agrees" if m.lo <= claim.ref else "opposite"
    if claim.kind == "range":
        paper_side = _side(min(claim.paper), claim.ref) if _side(min(claim.paper), claim.ref) == \
            _side(max(claim.paper), claim.ref) else 0
        lo_side, hi_side = _side(m.lo, claim.ref), _side(m.hi, claim.ref)
        if lo_side != hi_side or lo_side == 0:
            return "not resolved"
        return "agrees" if lo_side == paper_side else "opposite"
    want = 1 if claim.paper == "+" else -1 if claim.paper == "-" else _side(float(claim.paper), claim.ref)
    lo_side, hi_side = _side(m.lo, claim.ref), _side(m.hi, claim.ref)
    if lo_side != hi_side or lo_side == 0:
        return "not resolved"
    return "agrees" if lo_side == want else "opposite"


def verdict(claim: Claim, m: Measurement | None) -> tuple[str, str]:
    """The verdict on ``claim`` from measurement ``m`` and why, computed from the numbers alone.

    ``value``: *reproduced* when our 95 % interval contains the paper's number; *in direction only* when it
    does not but lies on the same side of ``claim.ref``; else *not reproduced*. ``range``: reproduced when our
    range over models overlaps the paper's. ``null``: reproduced when our interval contains ``ref``. ``sign``
    (the paper states a direction, no number): reproduced when our interval lies on that side of ``ref``.
    ``not above`` (the paper states that something does not happen): reproduced unless our interval lies above
    ``ref``.
    A measurement that is not the paper's quantity (``comparable=False``), or none, is *not comparable*.

    Examples
    --------
    >>> c = Claim("x", "v1", "an R²", 0.78)
    >>> verdict(c, Measurement("x", 0.75, 0.70, 0.80))[0]
    'reproduced'
    >>> verdict(c, Measurement("x", 0.40, 0.30, 0.50))[0]
    'reproduced in direction only'
    >>> verdict(c, Measurement("x", -0.10, -0.20, 0.05))[0]
    'not reproduced'
    >>> verdict(c, Measurement("x", 0.75, 0.70, 0.80, comparable=False, reason="stand-in"))
    ('not comparable', 'stand-in')
    """
    if m is None:
        return "not comparable", claim.extra.get("unavailable", "not measured in this build")
    if not m.comparable:
        return "not comparable", m.reason
    if any(math.isnan(x) for x in (m.value, m.lo, m.hi)):
        return "not comparable", "no interval"
    d = direction(claim, m)
    if claim.kind == "value":
        if m.lo <= claim.paper <= m.hi:
            return "reproduced", "the paper's number lies inside our 95 % interval"
        if d == "agrees":
            return "reproduced in direction only", "our interval excludes the paper's number, on the same side of " \
                                                    f"{claim.ref:g}"
        return "not reproduced", ("our interval lies on the other side of "
                                  f"{claim.ref:g}" if d == "opposite" else
                                  "our interval excludes the paper's number and is not resolved from "
                                  f"{claim.ref:g} at this scale")
    if claim.kind == "range":
        a, b = claim.paper
        if m.lo <= b and a <= m.hi:
            return "reproduced", "our range over models overlaps the paper's"
        if d == "agrees":
            return "reproduced in direction only", "our range does not overlap the paper's; same side of " \
                                                    f"{claim.ref:g}"
        return "not reproduced", "our range does not overlap the paper's"
    if claim.kind == "null":
        if d == "agrees":
            return "reproduced", f"our interval includes {claim.ref:g}"
        return "not reproduced", f"our interval excludes {claim.ref:g}"
    if claim.kind == "not above":
        if d == "agrees":
            return "reproduced", f"our interval does not lie above {claim.ref:g}"
        return "not reproduced", f"our interval lies above {claim.ref:g}"
    if claim.kind == "sign":
        if d == "agrees":
            return "reproduced", f"our interval lies on the stated side of {claim.ref:g}"
        if d == "opposite":
            return "not reproduced", f"our interval lies on the other side of {claim.ref:g}"
        return "not reproduced", f"not resolved at this scale: our interval includes {claim.ref:g}"
    raise InputError(f"unknown claim kind {claim.kind!r}")


# --- the scorecard ------------------------------------------------------------------------------------

def collect(folder) -> dict[str, tuple[str, list[Measurement]]]:
    """Chapter → (scale, measurements) from every executed notebook ``*.ipynb`` in ``folder``; a notebook that
    recorded nothing is listed under its file name with no measurements."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no folder of executed chapters at {folder}")
    found = {}
    for path in sorted(folder.glob("*.ipynb")):
        if path.name.endswith(".partial.ipynb"):
            continue
        # a chapter that ran but recorded nothing (one executed before the scorecard existed) is listed empty
        found.update(read_measurements(path) or {path.stem: ("", [])})
    return found


def source_folder(preferred=None, chapters=None) -> Path:
    """Where the executed chapters are read from: ``preferred`` if given; else ``build/notebooks`` when it holds
    every chapter of ``chapters`` (default: those the claims name that have a notebook), else the stored
    references ``tests/notebooks`` (what ``make test`` re-executes the scorecard against)."""
    if preferred is not None:
        return Path(preferred)
    root = Path(__file__).resolve().parent.parent
    chapters = chapters if chapters is not None else sorted(
        {c.chapter for c in CLAIMS.values() if (root / "notebooks" / f"{c.chapter}.py").exists()})
    built = root / "build" / "notebooks"
    if built.is_dir() and all((built / f"{c}.ipynb").exists() for c in chapters):
        return built
    return root / "tests" / "notebooks"


def _paper_text(claim: Claim) -> str:
    """The paper's number as the scorecard shows it.

    >>> _paper_text(CLAIMS["gbt_inflation"]), _paper_text(CLAIMS["visnet_no_routing"]), _paper_text(CLAIMS["ani_gap_ridge"])
    ('0.68–0.95', '≤ 0', '-0.792')
    """
    p = claim.paper
    if isinstance(p, tuple):
        return f"{p[0]:g}–{p[1]:g}"
    if p in ("+", "-"):
        return "positive" if p == "+" else "negative"
    return {"null": f"≈ {p:g}", "not above": f"≤ {p:g}"}.get(claim.kind, f"{p:+.3g}")


def scorecard(found: dict) -> "pd.DataFrame":
    """One row per (claim, measurement), in :data:`CLAIMS` order: the paper's number, ours with its interval,
    the scale and n, what was measured, the verdict and why, and whether the direction agrees.

    A claim without a measurement gets one row (*not comparable*, with the reason: its chapter was not run,
    or the model is not available offline).
    """
    import pandas as pd

    by_claim: dict[str, list] = {}
    for chapter, (scale, ms) in found.items():
        for m in ms:
            by_claim.setdefault(m.claim, []).append((chapter, scale, m))
    rows = []
    for key, claim in CLAIMS.items():
        entries = by_claim.get(key) or [(claim.chapter, found.get(claim.chapter, ("", []))[0], None)]
        for chapter, scale, m in entries:
            v, why = verdict(claim, m)
            if m is None and claim.chapter in found and "unavailable" not in claim.extra:
                why = ("its chapter ran but recorded no measurement (executed before the scorecard existed, as in an "
                       "older edition): re-execute the chapter")
            if m is not None and m.comparable and m.reason:
                why = f"{why} ({m.reason})"
            paper = claim.paper
            rows.append({
                "claim": key, "version": claim.version, "statement": claim.statement, "chapter": chapter,
                "paper": _paper_text(claim),
                "ours": math.nan if m is None else m.value, "lo": math.nan if m is None else m.lo,
                "hi": math.nan if m is None else m.hi, "range": claim.kind == "range",
                "n": None if m is None or not m.n else int(m.n), "scale": scale or "",
                "what": "" if m is None else m.what, "verdict": v, "why": why,
                "direction": "" if m is None or any(math.isnan(x) for x in (m.lo, m.hi)) else direction(claim, m),
            })
    return pd.DataFrame(rows)


def verdict_counts(card) -> dict[str, int]:
    """Verdict → how many claims (each claim counted once, by its best measurement's verdict)."""
    best = card.assign(rank=card["verdict"].map(VERDICTS.index)).groupby("claim")["rank"].min()
    return {v: int((best == i).sum()) for i, v in enumerate(VERDICTS)}


def display_table(card):
    """The scorecard as the page shows it: ours as "value [lo, hi]" (a range as "lo–hi")."""
    def ours(r):
        if math.isnan(r["ours"]):
            return "—"
        if r["range"]:
            return f"{r['lo']:.2f}–{r['hi']:.2f}"
        if math.isnan(r["lo"]):
            return f"{r['ours']:+.3f}"
        return f"{r['ours']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"

    out = card.assign(ours=card.apply(ours, axis=1),
                      n=card["n"].map(lambda v: "" if v is None or v != v else f"{int(v):,}"))
    return out[["version", "statement", "paper", "ours", "n", "scale", "what", "verdict", "why", "direction"]]


def scorecard_plot(card, floor: float = -1.0):
    """Ours (points, 95 % intervals as error bars; a range over models as a bar) against the paper's number
    (black diamond) or range (black bar) for every claim that has both; colour: the verdict. Values below
    ``floor`` are drawn at it, marked with a left arrow. The summary figure of the front page."""
    import matplotlib.pyplot as plt

    colours = {"reproduced": "tab:green", "reproduced in direction only": "tab:orange",
               "not reproduced": "tab:red", "not comparable": "tab:gray"}
    rows = card[~card["ours"].isna()].iloc[::-1].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.5, 0.36 * len(rows) + 1.6))
    for i, r in rows.iterrows():
        claim = CLAIMS[r["claim"]]
        c = colours[r["verdict"]]
        lo, hi, v = (max(x, floor) for x in (r["lo"], r["hi"], r["ours"]))
        if r["range"]:
            ax.plot([lo, hi], [i, i], color=c, lw=5, alpha=0.7, solid_capstyle="butt")
        else:
            ax.errorbar(v, i, xerr=[[v - lo], [hi - v]], fmt="o", color=c, capsize=3)
        if r["ours"] < floor:
            ax.plot(floor, i, marker="<", color=c, ms=9)
        p = claim.paper
        if isinstance(p, tuple):
            ax.plot(p, [i + 0.25, i + 0.25], color="k", lw=1.5)
        elif isinstance(p, (int, float)):
            ax.plot(max(p, floor), i + 0.25, "D", color="k", ms=4)
    def label(r):
        what = r["what"] if len(r["what"]) <= 46 else r["what"][:45] + "…"
        return f"{r['claim']} · {what}"

    ax.set_yticks(range(len(rows)), [label(r) for _, r in rows.iterrows()], fontsize=7)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("ours: value and 95 % interval, or range over models (colour: verdict)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in colours.items()]
    handles.append(plt.Line2D([], [], marker="D", ls="", color="k", label="paper"))
    ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=5, frameon=False)
    ax.set_xlim(left=floor - 0.08)
    fig.tight_layout()
    return fig


__all__ = ["CLAIMS", "Claim", "Measurement", "VERDICTS", "collect", "direction", "display_table",
           "read_measurements", "record", "scorecard", "scorecard_plot", "source_folder", "verdict", "verdict_counts"]

