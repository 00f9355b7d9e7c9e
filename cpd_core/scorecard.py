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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cpd_core.errors import InputError

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
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        d = {k: (math.nan if v is None and k in ("value", "lo", "hi") else v) for k, v in d.items()}
        return cls(**d)


def record(chapter: str, measurements) -> list[Measurement]:
    """Glue ``measurements`` into the executing notebook as ``scorecard_<chapter>`` (hidden); returns them.

    Raises :class:`~cpd_core.errors.InputError` for a claim key that :data:`CLAIMS` does not know.
    """
    from cpd_core.report import glue

    measurements = list(measurements)
    unknown = [m.claim for m in measurements if m.claim not in CLAIMS]
    if unknown:
        raise InputError(f"unknown scorecard claim(s) {unknown}; claims: {sorted(CLAIMS)}")
    glue(PREFIX + chapter, json.dumps([m.as_dict() for m in measurements]))
    return measurements


def read_measurements(notebook) -> dict[str, list[Measurement]]:
    """Chapter → its recorded measurements, from one executed notebook (``{}`` if it recorded none)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name", "")
            if not name.startswith(PREFIX):
                continue
            text = out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            payload = json.loads(ast.literal_eval(text))
            found[name[len(PREFIX):]] = [Measurement.from_dict(d) for d in payload]
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
    kind : {"value", "range", "null"}
        ``value``: our interval should contain the paper's number; ``range``: our range over models should
        overlap the paper's; ``null``: the paper states an absence (our interval should contain ``ref``).
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


def _claims(*claims: Claim) -> dict:
    return {c.key: c for c in claims}


#: Every number (or stated direction) of the two versions' abstracts, and the chapter that measures it.
#: v1: arXiv 2603.03155v1 (March 2026); v2: the revised version (task alignment, isomers).
CLAIMS.update(_claims(
    Claim("mace_gap_ridge", "v1", "MACE: geometry linearly accessible after composition removal, gap R²_geom",
          0.782, chapter="model_gradient"),
    Claim("ani_gap_ridge", "v1", "ANI-2x's descriptor: gap R²_geom under ridge", -0.792, chapter="ani2x_aev"),
    Claim("ani_gap_mlp", "v1", "ANI-2x's descriptor: gap R²_geom under an MLP", 0.784, chapter="ani2x_aev"),
    Claim("model_ordering", "v1", "a disentanglement gradient: tensor-product equivariant above handcrafted "
          "(gap R²_geom, paired difference)", "+", kind="sign", chapter="model_gradient"),
    Claim("mace_routing_dipole", "v1", "MACE routes the dipole to L = 1: R²_geom(L1) − R²_geom(L0) = 0.59 − 0.38",
          0.59 - 0.38, chapter="irreps_routing"),
    Claim("mace_routing_gap", "v1", "MACE routes the gap to L = 0: R²_geom(L0) − R²_geom(L1) = 0.76 − 0.34",
          0.76 - 0.34, chapter="irreps_routing"),
    Claim("visnet_no_routing", "v1", "ViSNet does not route: dipole R²_geom(L1) − R²_geom(L0) ≈ 0", 0.0,
          kind="null", chapter="irreps_routing"),
    Claim("gbt_inflation", "v1", "trees on the residual read a purely compositional target: R² 0.68–0.95",
          (0.68, 0.95), kind="range", chapter="composition_bases"),
    Claim("sample_efficiency", "v1", "linearly disentangled representations are more sample-efficient under "
          "linear probing (rank correlation over models)", "+", kind="sign", chapter="sample_efficiency"),
    Claim("crystal_gradient", "v1", "the disentanglement gradient on Materials Project crystals", "+", kind="sign",
          chapter="crystals"),
    Claim("trained_range", "v2", "networks trained on QM9 (gap or energy): gap R²_geom 0.081–0.533",
          (0.081, 0.533), kind="range", chapter="task_alignment"),
    Claim("gap_trained_range", "v2", "gap-trained networks: gap R²_geom 0.44–0.53", (0.44, 0.53), kind="range",
          chapter="task_alignment"),
    Claim("painn_alignment", "v2", "PaiNN gap-trained − energy-trained, gap R²_geom: 0.53 − 0.31", 0.53 - 0.31,
          chapter="task_alignment"),
    Claim("mace_alignment", "v2", "MACE gap-trained − energy-trained, gap R²_geom: 0.44 − 0.08", 0.44 - 0.08,
          chapter="task_alignment"),
    Claim("mace_mp0_gap", "v2", "MACE-MP-0 (energy-trained foundation model): gap R²_geom", 0.36,
          chapter="model_gradient", extra={"unavailable": "MACE-MP-0's weights need a download (no network here)"}),
    Claim("isomer_accuracy", "v2", "same-formula isomers: pairwise gap ordering from the geometric residual",
          0.946, ref=0.5, chapter="isomers"),
    Claim("isomer_composition_chance", "v2", "same-formula isomers: composition alone at chance", 0.5, kind="null",
          ref=0.5, chapter="isomers"),
))
