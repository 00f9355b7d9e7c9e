r"""What a linear projection leaves for nonlinear probes, and which composition basis to project out.

CPD removes from the pooled features :math:`H` everything in the column span of a composition matrix
:math:`C`. With the default basis (element counts and an intercept) a target that is *linear* in the
counts, such as the molecular mass, is out of a linear probe's reach on the residual by construction.
A nonlinear probe is not bound by that: the residual still carries the composition in every
*nonlinear* form (fractions, products of counts, presence of an element), and gradient-boosted trees
or an MLP can read a purely compositional target back from it. The paper measures this inflation:
trees score R² 0.68-0.95 on a compositional target.

Here the same question is asked under five bases (:func:`cpd_core.composition.composition`):

=========================  ================================================================
``counts``                 element counts + intercept (the default)
``fractions``              element fractions + intercept (intensive)
``counts+fractions+size``  counts, fractions and the atom number side by side
``onehot``                 which elements are present + intercept
``poly2``                  counts and all their pairwise products (degree 2) + intercept
=========================  ================================================================

For every model, on the block the models chapter reports for the gap (chosen nested, read from its
cached scan), each basis is projected out and ridge, MLP and gradient-boosted trees probe the residual
for two purely compositional targets: the molecular mass (linear in counts) and the mean atomic mass
(linear in fractions). Any R²_geom on them is composition that the basis left behind. Beside them, the
gap with ridge shows what each basis costs the real target: a wider basis removes more composition,
and also whatever geometry is correlated with it. Each basis is compared with the default paired
(:func:`cpd_core.compare`: the same molecules and folds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpd_core.errors import InputError

#: Composition bases and what each holds (:func:`cpd_core.composition.composition` kinds).
BASES = {
    "counts": "counts + intercept (default)",
    "fractions": "fractions + intercept",
    "counts+fractions+size": "counts + fractions + atom number",
    "onehot": "element presence + intercept",
    "poly2": "degree-2 polynomial of counts",
}
#: The basis every other is compared with.
DEFAULT = "counts"


def compositional_targets(numbers) -> dict:
    """Targets that are functions of composition alone: molecular mass (linear in counts) and mean atomic mass
    (linear in fractions), named as the controls of :mod:`cpd_core.experiments.controls`."""
    from cpd_core.experiments.controls import MASS, MASS_PER_ATOM, mass_per_atom, molecular_mass

    return {MASS: molecular_mass(numbers), MASS_PER_ATOM: mass_per_atom(numbers)}


@dataclass
class BasesRun:
    """What :func:`composition_bases` computed.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per (model, target, basis, probe): the block probed, R²_comp (what the basis alone
        explains of the target) and R²_geom with 95 % intervals, and the basis's rank.
    contrasts : pandas.DataFrame
        One row per (model, target, probe, basis other than the default): R²_geom(basis) −
        R²_geom(counts), paired, with its interval and ``resolved``.
    results : dict
        ``(model, target, basis, probe)`` → :class:`~cpd_core.CPDResult`.
    n : int
        Molecules probed.
    """

    summary: pd.DataFrame
    contrasts: pd.DataFrame
    results: dict = field(repr=False)
    n: int


def basis_jobs(H, data, ys: dict, bases: Sequence[str], probes: Sequence[str], gap=None) -> list[tuple[tuple, dict]]:
    """The CPD runs of one block: ``((target, basis, probe), cpd keyword arguments)`` for every combination,
    and the gap with ridge under every basis when ``gap`` is given. Nonlinear probes skip R²_full."""
    jobs = []
    for basis in bases:
        C = data.composition(kind=basis)
        for t, y in ys.items():
            for probe in probes:
                jobs.append(((t, basis, probe), {"H": H, "C": C, "y": y, "probe": probe, "full": probe == "ridge"}))
        if gap is not None:
            jobs.append((("gap", basis, "ridge"), {"H": H, "C": C, "y": gap, "probe": "ridge"}))
    return jobs


def contrast_rows(results: dict, info: dict | None = None) -> list[dict]:
    """Each basis against :data:`DEFAULT`, paired, for every (target, probe) of ``results`` (keys ``(target, basis, probe)``)."""
    from cpd_core.intervals import compare

    rows = []
    for (t, basis, probe), res in results.items():
        base = results.get((t, DEFAULT, probe))
        if basis == DEFAULT or base is None:
            continue
        c = compare(res, base)
        rows.append({**(info or {}), "target": t, "probe": probe, "basis": basis, "default": c.b, "this basis": c.a,
                     "difference": c.diff, "difference_lo": c.lo, "difference_hi": c.hi, "resolved": c.resolved})
    return rows


def composition_bases(models: Sequence[str] | None = None, n: int | None = 500, seed: int = 0,
                      bases: Sequence[str] = tuple(BASES), probes: Sequence[str] = ("ridge", "mlp", "gbt"),
                      cv: int = 5, device: str = "auto", progress: bool = False) -> BasesRun:
    """Compositional targets probed on each model's gap block after projecting out each basis.

    Parameters
    ----------
    models : sequence of str, optional
        Registry names (default :func:`~cpd_core.experiments.model_gradient.default_models`); random-init
        twins with their first seed. The probe set and each model's gap block are the models chapter's
        for the same models, ``n`` and ``seed`` (its block scans are read from the cache).
    bases : sequence of str
        Keys of :data:`BASES`; the first comparisons are against :data:`DEFAULT`, which is always run.
    probes : sequence of str
        Probes of the compositional targets (the gap runs with ridge only).
    """
    from tqdm import tqdm

    from cpd_core.decomposition import cpd_many
    from cpd_core.experiments.model_gradient import default_models
    from cpd_core.experiments.probe_set import probe_set
    from cpd_core.models import REGISTRY
    from cpd_core.selection import scan_blocks

    unknown = [b for b in bases if b not in BASES]
    if unknown:
        raise InputError(f"unknown composition basis {unknown}; bases: {list(BASES)}")
    bases = [DEFAULT] + [b for b in bases if b != DEFAULT]
    models = default_models() if models is None else list(models)
    ps = probe_set(models, n=n, seed=seed)
    ys = compositional_targets(ps.data.numbers)
    gap = ps.targets(["gap"])
    keys, jobs, infos = [], [], {}
    for name, s in tqdm(ps.runs((0,)), desc="gap blocks", disable=not progress):
        card = REGISTRY[name]
        blocks = ps.blocks(name, s, device=device, progress=progress)
        block = scan_blocks(blocks, ps.C, gap, cv=cv, seed=0, cache=True).choose("gap").block
        infos[name] = {"model": name, "family": card.family, "status": card.status, "block": block}
        for key, job in basis_jobs(blocks[block], ps.data, ys, bases, probes, gap=gap["gap"]):
            keys.append((name, *key))
            jobs.append(job)
        del blocks
    done = cpd_many(jobs, cv=cv, seed=0, progress="composition bases" if progress else None)
    results = dict(zip(keys, done))
    rows, contrasts = [], []
    for name, info in infos.items():
        mine = {k[1:]: r for k, r in results.items() if k[0] == name}
        for (t, basis, probe), res in mine.items():
            s = res.summary()
            rows.append({**info, "target": t, "basis": basis, "probe": probe, "rank_C": s["rank_C"],
                         **{k: s[k] for k in ("r2_comp", "r2_geom", "r2_geom_lo", "r2_geom_hi")}})
        contrasts += contrast_rows(mine, info)
    return BasesRun(pd.DataFrame(rows), pd.DataFrame(contrasts), results, len(ps.data))


def inflation_table(run: BasesRun, target: str) -> pd.DataFrame:
    """One row per (model, probe), one column per basis: R²_geom [95 % interval] of ``target``."""
    s = run.summary[run.summary["target"] == target]
    if s.empty:
        raise InputError(f"target {target!r} was not probed; probed: {sorted(set(run.summary['target']))}")
    rows = []
    for (model, probe), grp in s.groupby(["model", "probe"], sort=False):
        by = grp.set_index("basis")
        row = {"model": model, "probe": probe}
        for b in BASES:
            if b in by.index:
                row[b] = f"{by.loc[b, 'r2_geom']:.3f} [{by.loc[b, 'r2_geom_lo']:.3f}, {by.loc[b, 'r2_geom_hi']:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def basis_summary(run: BasesRun) -> pd.DataFrame:
    """Per (basis, target, probe): the median R²_geom over models, the largest, and in how many models the basis
    lowered / raised it against the default with a paired interval excluding zero."""
    s, c = run.summary, run.contrasts
    rows = []
    for (basis, t, probe), grp in s.groupby(["basis", "target", "probe"], sort=False):
        mine = c[(c["basis"] == basis) & (c["target"] == t) & (c["probe"] == probe)] if len(c) else c
        rows.append({"basis": basis, "target": t, "probe": probe, "median R²_geom": grp["r2_geom"].median(),
                     "max R²_geom": grp["r2_geom"].max(), "models": grp["model"].nunique(),
                     "lower than default": int((mine["resolved"] & (mine["difference"] < 0)).sum()) if len(mine) else 0,
                     "higher than default": int((mine["resolved"] & (mine["difference"] > 0)).sum()) if len(mine) else 0})
    return pd.DataFrame(rows)


def bases_facts(run: BasesRun) -> dict:
    """The numbers the composition-bases chapter's prose quotes."""
    from cpd_core.experiments.controls import MASS, MASS_PER_ATOM
    from cpd_core.paper import paper_value

    s = run.summary
    facts = {"n_mol": run.n, "n_models": int(s["model"].nunique()),
             "probes": ", ".join(dict.fromkeys(s[s["target"] != "gap"]["probe"])),
             "paper_low": f"{paper_value('r2_geom_tree_inflation_low', 'compositional target', '-', 'gbt'):.2f}",
             "paper_high": f"{paper_value('r2_geom_tree_inflation_high', 'compositional target', '-', 'gbt'):.2f}"}
    for probe in ("gbt", "mlp", "ridge"):
        for t, key in ((MASS, "mass"), (MASS_PER_ATOM, "mpa")):
            sub = s[(s["target"] == t) & (s["probe"] == probe) & (s["basis"] == DEFAULT)]
            facts[f"{probe}_{key}_default"] = (f"{sub['r2_geom'].min():.2f} to {sub['r2_geom'].max():.2f}"
                                               if len(sub) else "not run here")
    # each basis against the default, paired: in how many (model, target) cases it moved R²_geom
    c = run.contrasts
    nonlinear = c[(c["probe"] != "ridge") & (c["target"] != "gap")] if len(c) else c
    gap = c[(c["probe"] == "ridge") & (c["target"] == "gap")] if len(c) else c
    for key, frame in (("nonlinear", nonlinear), ("gap", gap)):
        for direction, sign in (("lowered", -1), ("raised", 1)):
            parts = []
            for b in BASES:
                mine = frame[frame["basis"] == b] if len(frame) else frame
                if len(mine):
                    hits = int((mine["resolved"] & (np.sign(mine["difference"]) == sign)).sum())
                    parts.append(f"{b} {hits} of {len(mine)}")
            facts[f"{key}_{direction}"] = "; ".join(parts) if parts else "not run here"
    g = s[(s["target"] == "gap") & (s["probe"] == "ridge")]
    facts["gap_cost"] = ("; ".join(f"{b} {m:.3f}" for b, m in g.groupby("basis")["r2_geom"].median().reindex(
        [b for b in BASES if b in set(g["basis"])]).items()) if len(g) else "not run here")
    return facts



def bases_measurements(run: BasesRun) -> list:
    """The scorecard's numbers from this chapter (:mod:`cpd_core.scorecard`): for each compositional target, the
    range over models of the trees' R²_geom on the default (counts) residual (the paper does not say which
    compositional target its range is for)."""
    from cpd_core.scorecard import Measurement

    s = run.summary
    g = s[(s["probe"] == "gbt") & (s["basis"] == DEFAULT) & (s["target"] != "gap")]
    out = []
    for target, sub in g.groupby("target", sort=False):
        lo, hi = float(sub["r2_geom"].min()), float(sub["r2_geom"].max())
        out.append(Measurement("gbt_inflation", lo, lo, hi, n=int(run.n),
                               what=f"GBT, counts residual, {target}, range over {sub['model'].nunique()} models"))
    return out


__all__ = ["bases_measurements", "BASES", "BasesRun", "DEFAULT", "basis_jobs", "basis_summary", "bases_facts", "composition_bases",
           "compositional_targets", "contrast_rows", "inflation_table"]
