r"""Crystals: CPD of the crystal models on Materials Project crystals and on Perov-5, each model checked first.

The same procedure as the molecular chapters (:mod:`cpd_core.experiments.model_gradient`): every
block of every model, the block chosen on inner folds and scored on outer ones, ridge with its 95 %
interval, MLP and trees on each fold's chosen block, random-init twins and control targets beside
every model. What changes for crystals:

* **Structures** are periodic cells (:func:`cpd_core.datasets.load_mp`, :func:`~cpd_core.datasets.load_perov5`);
  pooling is the mean over the atoms of the cell, so features do not depend on the choice of cell,
  while element *counts* do (a supercell doubles them): the counts basis removes what is linear in
  the counts of this cell, and :func:`crystal_cpd` takes any basis of
  :data:`cpd_core.composition.KINDS` (``"fractions"``: what is linear in the formula, independent of the cell).
* **Composition** spans many elements, most in a few crystals only: the projection is rank-aware
  (pivoted QR, :mod:`cpd_core.projection`; a training fold without an element has a zero column there).
* **Targets** exist on different crystals (the band gap on those of two of the three tables): each
  group of targets defined on the same crystals is probed on those crystals (:func:`target_sets`).
* **Checks before use** (:func:`force_check`, :func:`prediction_check`): each model is first run on
  what it was trained for, on these crystals.
* **The paper's single split** is reported beside the 5-fold result: the first of the five seeded folds
  held out (an 80/20 split), with a bootstrap interval over its crystals (:func:`single_split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from cpd_core.errors import InputError
from cpd_core.experiments.controls import MASS, MASS_PER_ATOM, SHUFFLED, mass_per_atom, molecular_mass, shuffled
from cpd_core.experiments.model_gradient import _interval, _model_rows, _routing
from cpd_core.intervals import compare

#: Crystal models trained on Materials Project data -> their random-init twin (same network, untrained).
CRYSTAL_MODELS = {
    "chgnet-0.3.0": "chgnet-0.3.0-random",
    "sevennet-0": "sevennet-0-random",
    "m3gnet-mp-2021": "m3gnet-mp-random",
    "tensornet-matpes-pbe": "tensornet-matpes-random",
    "megnet-mp-eform": "megnet-random",
    "megnet-mp-bandgap": "megnet-random",
}
#: What each crystal model was trained to predict (the check it gets first).
TRAINED_FOR = {
    "chgnet-0.3.0": "energy, forces, stress, magnetic moments (MPtrj)",
    "sevennet-0": "energy, forces, stress (MPtrj)",
    "m3gnet-mp-2021": "energy, forces, stress (MP-2021.2.8)",
    "tensornet-matpes-pbe": "energy, forces, stress (MatPES PBE)",
    "megnet-mp-eform": "formation energy per atom (MP-2018.6.1)",
    "megnet-mp-bandgap": "band gap, four fidelities (MP-2019.4.1)",
}
#: Models with a potential-energy surface: checked by their forces.
PES_MODELS = ("chgnet-0.3.0", "sevennet-0", "m3gnet-mp-2021", "tensornet-matpes-pbe")


#: The book scale's trained models: the two MPtrj potentials and M3GNet extract in seconds on a CPU;
#: the full scale adds every other crystal model without a caveat (TensorNet-MatPES).
BOOK_MODELS = ("chgnet-0.3.0", "sevennet-0", "m3gnet-mp-2021")


def crystal_models(models: Sequence[str] | str | None = None, twins: bool = True) -> list[str]:
    """Registered crystal models (without a caveat, unless named) and, with ``twins``, their registered twins.

    ``models``: a list of names; ``"all"`` or ``None`` for every model of :data:`CRYSTAL_MODELS` that the
    registry has without a caveat (the others are shown with their caveat, not run); ``"book"`` for
    those of :data:`BOOK_MODELS` without a caveat.
    """
    from cpd_core.models import REGISTRY

    if models in (None, "all", "book"):
        pool = BOOK_MODELS if models == "book" else CRYSTAL_MODELS
        models = [m for m in pool if m in REGISTRY and not REGISTRY[m].caveat]
    models = [models] if isinstance(models, str) else list(models)
    unknown = [m for m in models if m not in REGISTRY]
    if unknown:
        raise InputError(f"unknown model(s) {unknown}; crystal models: {list(CRYSTAL_MODELS)}")
    out = list(models)
    if twins:
        out += [t for m in models if (t := CRYSTAL_MODELS.get(m)) in REGISTRY and t not in out]
    return out


def crystal_subset(n: int | None = 2000, seed: int = 0, band_gap_only: bool = False, data_dir=None):
    """The paper-sized MP subset (:func:`~cpd_core.datasets.load_mp`, 2,000 crystals with ``seed``), or ``n`` of it.

    With ``band_gap_only``, ``n`` crystals are drawn (seeded) among those of the 2,000 that have a PBE
    band gap, so that every target is defined on the same crystals (one set of rows, one block scan
    per model: the book scale); otherwise the first ``n`` of a seeded draw of the 2,000.
    """
    from cpd_core.datasets.crystals import N_MP, load_mp, mp_draw

    drawn = mp_draw(N_MP, seed, data_dir)
    pool = np.flatnonzero(drawn["band_gap"].notna().to_numpy()) if band_gap_only else np.arange(len(drawn))
    if n is not None and n < 1:
        raise InputError(f"n must be positive, got {n}")
    if n is not None and n < len(pool):
        pool = np.sort(np.random.default_rng(seed).choice(pool, size=int(n), replace=False))
    return load_mp(n=N_MP, seed=seed, data_dir=data_dir, within=pool)  # parses only the crystals kept


def composition_baselines(data, targets: Sequence[str], bases: Sequence[str] = ("counts", "fractions"),
                          cv: int = 5, seed: int = 0) -> pd.DataFrame:
    """R²_comp (5-fold, the composition fit on the training folds) of each target under each basis, with intervals.

    No features are involved: what a linear function of each basis explains of the target. For
    crystals the counts of a cell scale with its size while the targets are per atom or per volume,
    which a basis of fractions describes directly.
    """
    from cpd_core.decomposition import cpd

    rows = []
    for t in targets:
        y = data.targets[t].to_numpy(float)
        keep = np.isfinite(y)
        sub = data.select(keep)
        for basis in bases:
            C = sub.composition(kind=basis)
            H = np.random.default_rng(seed).normal(size=(len(sub), 1))  # R²_comp does not depend on H
            r = cpd(H, C, y[keep], probe="ridge", cv=cv, seed=seed)
            lo, hi = r.ci["r2_comp"]
            rows.append({"target": t, "basis": basis, "n": len(sub), "columns": C.shape[1],
                         "rank": r.composition_rank, "r2_comp": r.r2_comp, "r2_comp_lo": lo, "r2_comp_hi": hi})
    return pd.DataFrame(rows)


def element_coverage(data) -> pd.DataFrame:
    """Elements of ``data``: in how many structures each occurs, most frequent first."""
    from cpd_core.composition import symbol

    counts: dict[int, int] = {}
    for z in data.numbers:
        for e in set(map(int, z)):
            counts[e] = counts.get(e, 0) + 1
    return (pd.DataFrame({"element": [symbol(e) for e in counts], "Z": list(counts), "structures": list(counts.values())})
            .sort_values(["structures", "Z"], ascending=[False, True], ignore_index=True))


def target_sets(targets: pd.DataFrame) -> list[tuple[np.ndarray, list[str]]]:
    """Groups of targets defined (not NaN) on the same structures: ``[(mask, [targets]), ...]``, largest first.

    Examples
    --------
    >>> t = pd.DataFrame({"gap": [1.0, np.nan, 2.0], "rho": [1.0, 2.0, 3.0], "v": [3.0, 2.0, 1.0]})
    >>> [(m.tolist(), names) for m, names in target_sets(t)]
    [([True, True, True], ['rho', 'v']), ([True, False, True], ['gap'])]
    """
    groups: dict[bytes, tuple[np.ndarray, list]] = {}
    for name in targets.columns:
        mask = targets[name].notna().to_numpy()
        if mask.any():
            groups.setdefault(mask.tobytes(), (mask, []))[1].append(name)
    return sorted(groups.values(), key=lambda g: -int(g[0].sum()))


@dataclass
class CrystalRun:
    """What :func:`crystal_cpd` computed (as :class:`~cpd_core.experiments.model_gradient.GradientRun`).

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per (model, seed, target, probe): nested CPD with 95 % intervals, the structures it
        ran on (``n``, ``set``), and the model's card.
    scan : pandas.DataFrame
        Every block's ridge R²_geom per (model, seed, target).
    results : dict
        ``(model, seed, target, probe)`` → :class:`~cpd_core.CPDResult`.
    routing : pandas.DataFrame
        Equivariant models: L0 vs L ≥ 1 blocks (nested), paired.
    unsupported : pandas.DataFrame
        Structures left out because some model does not cover one of their elements: ``id``, ``elements``, ``model``.
    dataset : str
        The data set's name (``"mp"``, ``"perov5"``).
    basis : str
        The composition basis projected out.
    n_structures : int
        Structures every model covers (those probed).
    """

    summary: pd.DataFrame
    scan: pd.DataFrame
    results: dict = field(repr=False)
    routing: pd.DataFrame
    unsupported: pd.DataFrame
    dataset: str
    basis: str
    n_structures: int


def crystal_cpd(models: Sequence[str], data, targets: Sequence[str] | None = None,
                probes: Sequence[str] = ("ridge", "mlp", "gbt"), twin_seeds: Sequence[int] = (0,), cv: int = 5,
                basis: str = "counts", controls: bool = True, device: str = "auto",
                progress: bool = False) -> CrystalRun:
    """Nested CPD of each model on crystals, per target, with intervals, twins and controls.

    Parameters
    ----------
    models : sequence of str
        Registry names (:func:`crystal_models`).
    data : cpd_core.datasets.Dataset
        Periodic structures with targets (:func:`~cpd_core.datasets.load_mp`, :func:`~cpd_core.datasets.load_perov5`).
        Structures holding an element some model does not cover are left out for all, and counted.
    targets : sequence of str, optional
        Columns of ``data.targets`` (default all). Each is probed on the structures where it is defined.
    probes, cv, twin_seeds, device, progress
        As in :func:`~cpd_core.experiments.model_gradient.model_gradient`.
    basis : str
        Composition basis (:data:`cpd_core.composition.KINDS`) projected out; default counts + intercept.
    controls : bool
        Probe the control targets with ridge: cell mass (linear in counts), mean atomic mass (linear in
        fractions) and, per group of targets, its first target shuffled over structures.
    """
    from tqdm import tqdm

    from cpd_core.composition import KINDS as BASES
    from cpd_core.datasets.crystals import unsupported as unsupported_rows
    from cpd_core.experiments.probe_set import probe_set
    from cpd_core.models import REGISTRY
    from cpd_core.models.lazy import load_lazy

    if not data.periodic:
        raise InputError(f"{data!r} has no cells: crystal_cpd takes periodic structures (load_mp, load_perov5)")
    if basis not in BASES:
        raise InputError(f"unknown composition basis {basis!r}; choose one of {BASES}")
    targets = list(data.targets.columns) if targets is None else list(targets)
    unknown = [t for t in targets if t not in data.targets.columns]
    if unknown:
        raise InputError(f"{data.name} has no target(s) {unknown}; it has {list(data.targets.columns)}")
    missing = []
    for name in models:
        table = unsupported_rows(data, load_lazy(name, device="cpu").elements)
        missing.append(table.assign(model=name))
    ps = probe_set(models, dataset=data)
    C_all = ps.data.composition(kind=basis)
    sets = target_sets(ps.data.targets[targets])
    labels = {}
    ys_sets = []
    for mask, names in sets:
        label = "all structures" if mask.all() else f"with {', '.join(names)}"
        ys = {t: ps.data.targets[t].to_numpy(float)[mask] for t in names}
        ctrl = {}
        if controls:
            numbers = [z for z, keep in zip(ps.data.numbers, mask) if keep]
            if mask.all():
                ctrl[MASS] = molecular_mass(numbers)
                ctrl[MASS_PER_ATOM] = mass_per_atom(numbers)
            ctrl[SHUFFLED.format(names[0])] = shuffled(ys[names[0]], seed=0)
        C = C_all[mask]
        C = C[:, np.abs(C).sum(axis=0) > 0]  # elements absent from these structures
        ys_sets.append((label, mask, C, ys, ctrl))
        labels.update({t: label for t in names})
    summaries, scans, results, routes = [], [], {}, []
    for name, s in tqdm(ps.runs(twin_seeds), desc="CPD per crystal model", disable=not progress):
        card = REGISTRY[name]
        blocks = ps.blocks(name, s, device=device, progress=progress)
        first_seed = card.status != "random-init" or s == twin_seeds[0]
        info = {"model": name, "seed": s, "family": card.family, "status": card.status, "twin_of": card.twin_of,
                "parameters": ps.n_parameters[name]}
        for label, mask, C, ys, ctrl in ys_sets:
            sub = {b: H[mask] for b, H in blocks.items()}
            rows, scan, res, block_scan = _model_rows(name, s, sub, C, {**ys, **ctrl}, probes, cv, set(ctrl),
                                                      nonlinear=first_seed, controls=first_seed)
            summaries.append(pd.DataFrame(rows).assign(set=label, **info))
            scans.append(scan.assign(model=name, seed=s))
            results.update(res)
            if s == 0:
                routes += [dict(r, set=label) for r in _routing(name, block_scan, list(ys))]
        del blocks
    summary = pd.concat(summaries, ignore_index=True)
    front = ["model", "seed", "family", "status", "twin_of", "parameters", "set", "target", "control", "block",
             "probe"]
    summary = summary[front + [c for c in summary.columns if c not in front]]
    gone = pd.concat(missing, ignore_index=True) if missing else pd.DataFrame(columns=["id", "elements", "model"])
    return CrystalRun(summary, pd.concat(scans, ignore_index=True), results, pd.DataFrame(routes), gone,
                      str(data.name), basis, len(ps.data))


def single_split(run: CrystalRun, fold: int = 0, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Ridge R²_geom and R²_comp on one held-out fold only (the paper's single split: 80/20), with bootstrap intervals.

    The probe and block are those the nested procedure fit without that fold; the interval resamples
    the fold's structures (:func:`cpd_core.intervals.bootstrap_r2`, percentile, ``n_boot`` replicates).
    """
    from cpd_core.intervals import bootstrap_r2, percentile_interval

    rows = []
    for (model, s, target, probe), res in run.results.items():
        if probe != "ridge" or s != 0:
            continue
        held = np.flatnonzero(res.fold_of == fold)
        y = res.y[held]
        preds = [res.oof[key][held] for key in ("comp", "geom")]
        reps = bootstrap_r2(y, np.zeros(len(held), dtype=int), preds, n_boot=n_boot, seed=seed)
        row = {"model": model, "target": target, "n_test": len(held)}
        for j, key in enumerate(("comp", "geom")):
            row[f"r2_{key}"] = _r2(y, preds[j])
            row[f"r2_{key}_lo"], row[f"r2_{key}_hi"] = percentile_interval(reps[:, j])
        rows.append(row)
    return pd.DataFrame(rows)


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return float("nan") if ss == 0 else 1.0 - float(((y - pred) ** 2).sum()) / ss


# --- checks: each model on what it was trained for -------------------------------------------------------


def calculator(name: str):
    """An ASE calculator of a crystal potential (energy and forces), built from the same weights as its featurizer
    (quietly: the packages' load-time prints and warnings are dropped)."""
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return _calculator(name)


def _calculator(name: str):
    if name == "chgnet-0.3.0":
        from chgnet.model.dynamics import CHGNetCalculator

        from cpd_core.models.chgnet import load_chgnet

        return CHGNetCalculator(model=load_chgnet(), use_device="cpu")
    if name == "sevennet-0":
        import mace  # noqa: F401  (e3nn 0.4.4 loads only after mace: see docs/model-stacks.md)
        from sevenn.sevennet_calculator import SevenNetCalculator

        from cpd_core.models.sevennet import DEFAULT_CHECKPOINT, checkpoint_path

        return SevenNetCalculator(str(checkpoint_path(DEFAULT_CHECKPOINT)), device="cpu")
    if name in ("m3gnet-mp-2021", "tensornet-matpes-pbe"):
        from matgl.ext.ase import PESCalculator

        from cpd_core.models.matgl import CHECKPOINTS, load_checkpoint

        return PESCalculator(load_checkpoint(CHECKPOINTS[name][0]), stress_unit="eV/A3")
    raise InputError(f"no calculator for {name!r}; potentials: {PES_MODELS}")


def force_check(models: Sequence[str], data, n: int = 30, rattle: float = 0.05, seed: int = 0) -> pd.DataFrame:
    r"""Forces of each potential at Materials Project's relaxed structures, and after a small random displacement.

    MP's structures are relaxed with PBE(+U), so a potential that reproduces PBE gives forces near zero
    on them (``median |F| (MP)``: the median over crystals of the root-mean-square atomic force, eV/Å),
    and after every atom is displaced by :math:`\delta` (Gaussian, ``rattle`` Å per coordinate, seeded)
    forces that push back: ``restoring`` is the mean over crystals of :math:`-\sum_i F_i\cdot\delta_i /
    (\lVert F\rVert\,\lVert\delta\rVert)` (1: straight back; 0: unrelated; a random network scores about 0).
    ``n`` crystals are drawn with ``seed``; a crystal a model cannot run is counted in ``failed``.
    """
    import warnings

    rng = np.random.default_rng(seed)
    rows_ = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
    structures = [data.structures[i] for i in rows_]
    shifts = [rng.normal(0.0, rattle, size=(len(a), 3)) for a in structures]
    out = []
    for name in models:
        calc = calculator(name)
        eq, moved, cosines, failed = [], [], [], 0
        for atoms, delta in zip(structures, shifts):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    a = atoms.copy()
                    a.calc = calc
                    f0 = a.get_forces()
                    a.positions = a.positions + delta
                    a.calc = calc
                    f1 = a.get_forces()
            except Exception:  # a structure the potential cannot handle is counted, not hidden
                failed += 1
                continue
            eq.append(float(np.sqrt((f0 ** 2).sum(axis=1).mean())))
            moved.append(float(np.sqrt((f1 ** 2).sum(axis=1).mean())))
            df = f1 - f0  # the response to the displacement (f0 is what the model leaves at the MP structure)
            cosines.append(float(-(df * delta).sum() / (np.linalg.norm(df) * np.linalg.norm(delta) + 1e-12)))
        out.append({"model": name, "trained for": TRAINED_FOR.get(name, ""), "n": len(eq), "failed": failed,
                    "median |F| (MP)": np.median(eq) if eq else np.nan,
                    "median |F| (displaced)": np.median(moved) if moved else np.nan,
                    "restoring": np.mean(cosines) if cosines else np.nan})
    return pd.DataFrame(out)


def predictions(name: str, data, batch_size: int = 64, **options) -> np.ndarray:
    """A matgl model's own predictions per structure (MEGNet: formation energy eV/atom or band gap eV)."""
    import torch

    from cpd_core.models import load
    from cpd_core.models.base import AtomsBatch

    f = load(name, device="cpu", **options)
    out = []
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        batch = AtomsBatch.from_arrays(data.numbers[start:stop], data.positions[start:stop],
                                       data.cells[start:stop])
        with torch.no_grad():
            out.append(f.predict(batch).reshape(-1).double().numpy())
    return np.concatenate(out)


def prediction_check(name: str, data, target: str, reference: str, **options) -> dict:
    """A model's prediction against a column of ``data.targets``: MAE, R², Pearson r, mean offset, n."""
    y = data.targets[target].to_numpy(float)
    keep = np.isfinite(y)
    sub = data.select(keep)
    pred = predictions(name, sub, **options)
    y = y[keep]
    return {"model": name, "trained for": TRAINED_FOR.get(name, ""), "reference": reference, "n": int(keep.sum()),
            "MAE": float(np.abs(pred - y).mean()), "R²": _r2(y, pred),
            "pearson r": float(np.corrcoef(pred, y)[0, 1]), "mean offset": float((pred - y).mean())}


# --- tables, comparisons, facts (the per-model tables are the models chapter's: gradient_table,
# controls_table, twin_gaps of cpd_core.experiments.model_gradient, which read a CrystalRun as a GradientRun)


#: Architectures whose features are built from tensor products of spherical harmonics (as MACE's).
TENSOR_PRODUCT = ("sevennet-0",)
#: Invariant message-passing networks (distances and angles only).
INVARIANT = ("chgnet-0.3.0", "m3gnet-mp-2021", "megnet-mp-eform", "megnet-mp-bandgap")


def equivariant_vs_invariant(run: CrystalRun, target: str = "band_gap") -> dict | None:
    """The crystal gradient's direction: SevenNet-0 (tensor-product equivariant, standing in for MACE-MP-0)
    minus the best invariant trained model, nested ridge R²_geom of ``target``, paired (None if either is absent)."""
    s = run.summary
    sub = s[(s["probe"] == "ridge") & (s["target"] == target) & (s["seed"] == 0)].set_index("model")["r2_geom"]
    top = [m for m in TENSOR_PRODUCT if m in sub.index]
    rest = [m for m in INVARIANT if m in sub.index]
    if not top or not rest:
        return None
    best = max(rest, key=lambda m: sub[m])
    c = compare(run.results[(top[0], 0, target, "ridge")], run.results[(best, 0, target, "ridge")])
    return {"top": top[0], "other": best, "diff": c.diff, "lo": c.lo, "hi": c.hi, "verdict": c.verdict(top[0], best),
            "n": int(s.loc[(s["model"] == top[0]) & (s["target"] == target), "n"].iloc[0])}


def crystal_measurements(run: CrystalRun) -> list:
    """The scorecard's crystal row: the direction of the gradient on MP crystals (band gap), not comparable
    (SevenNet-0 stands in for MACE-MP-0; an offline MP-derived subset, not the paper's)."""
    from cpd_core.scorecard import Measurement

    d = equivariant_vs_invariant(run)
    if d is None:
        return []
    return [Measurement("crystal_gradient", float(d["diff"]), float(d["lo"]), float(d["hi"]), n=d["n"],
                        what=f"{d['top']} − {d['other']} (best invariant), MP band gap, nested ridge, paired",
                        comparable=False,
                        reason="SevenNet-0 stands in for MACE-MP-0; an offline subset of MP crystals (three "
                               "published tables), not the paper's 2,000")]


def molecular_comparison(crystal: CrystalRun, qm9, target: str = "band_gap") -> pd.DataFrame:
    """Models run on both: nested ridge R²_geom of the QM9 gap (a :class:`~cpd_core.experiments.model_gradient.GradientRun`)
    beside that of a crystal ``target``, with intervals."""
    s, q = crystal.summary, qm9.summary
    rows = []
    for model in dict.fromkeys(s["model"]):
        a = s[(s["model"] == model) & (s["target"] == target) & (s["probe"] == "ridge") & (s["seed"] == 0)]
        b = q[(q["model"] == model) & (q["target"] == "gap") & (q["probe"] == "ridge") & (q["seed"] == 0)]
        if len(a) and len(b):
            a, b = a.iloc[0], b.iloc[0]
            rows.append({"model": model, "status": a["status"], "QM9 gap": b["r2_geom"], "QM9 gap_lo": b["r2_geom_lo"],
                         "QM9 gap_hi": b["r2_geom_hi"], f"MP {target}": a["r2_geom"],
                         f"MP {target}_lo": a["r2_geom_lo"], f"MP {target}_hi": a["r2_geom_hi"]})
    return pd.DataFrame(rows)


def crystal_facts(run: CrystalRun, perov: CrystalRun | None = None) -> dict:
    """The numbers the crystal chapter's prose quotes, from its runs (formatted strings and counts)."""
    s = run.summary
    main = s[~s["control"].astype(bool) & (s["seed"] == 0) & (s["probe"] == "ridge")]
    trained = main[main["status"] != "random-init"]
    twins = main[main["status"] == "random-init"]
    ctrl = s[s["control"].astype(bool) & (s["seed"] == 0)]
    resolved = trained[trained["r2_geom_lo"] > 0]
    best = trained.loc[trained["r2_geom"].idxmax()]
    facts = {
        "n_crystals": run.n_structures,
        "n_models": int(trained["model"].nunique()), "n_twins": int(twins["model"].nunique()),
        "n_cells": len(trained),
        "n_resolved": len(resolved),
        "resolved_list": ", ".join(f"{r['model']} on {r['target']} ({_interval(r)})" for _, r in resolved.iterrows())
        or "none",
        "best": f"{best['model']} on {best['target']}, {_interval(best)}",
        "twin_max": f"{twins['r2_geom'].max():.3f}" if len(twins) else "n/a",
        "r2_comp_range": f"{main['r2_comp'].min():.2f} to {main['r2_comp'].max():.2f}",
        "shuffled_max": f"{ctrl[ctrl['target'].str.endswith('(shuffled)')]['r2_geom'].max():.3f}",
    }
    gbt = s[(s["probe"] == "gbt") & ~s["control"].astype(bool) & (s["seed"] == 0)]
    facts["gbt_range"] = (f"{gbt['r2_geom'].min():.2f} to {gbt['r2_geom'].max():.2f}" if len(gbt) else "not run")
    d = equivariant_vs_invariant(run)
    facts["gradient"] = d["verdict"] if d else "not measured (SevenNet-0 or an invariant model missing)"
    if perov is not None:
        p = perov.summary
        pm = p[~p["control"].astype(bool) & (p["seed"] == 0) & (p["probe"] == "ridge")]
        pt = pm[pm["status"] != "random-init"]
        pb = pt.loc[pt["r2_geom"].idxmax()]
        facts.update({"n_perov": perov.n_structures, "perov_best": f"{pb['model']}, {_interval(pb)}",
                      "perov_comp": f"{pt['r2_comp'].iloc[0]:.3f}"})
    return facts


__all__ = ["BOOK_MODELS", "CRYSTAL_MODELS", "CrystalRun", "INVARIANT", "PES_MODELS", "TENSOR_PRODUCT", "TRAINED_FOR",
           "calculator", "composition_baselines", "crystal_cpd", "crystal_facts", "crystal_measurements", "crystal_models",
           "crystal_subset", "element_coverage", "equivariant_vs_invariant", "force_check", "molecular_comparison",
           "prediction_check", "predictions", "single_split", "target_sets"]
