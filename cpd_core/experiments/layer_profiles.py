r"""Layer-wise profiles: what each layer of a model holds, from its first block to its last.

For every model and every depth (the embedding or AEV is depth 0, message-passing layer or hidden
layer :math:`k` is depth :math:`k`), the layer's scalar block (``<layer>/L0``; ANI's ``aev`` and
``hidden<k>``) is probed three ways on the same molecules and folds:

* **ridge** :math:`R^2_\text{geom}` of each target (the gap, the dipole), with its 95 % interval: the
  same per-block scan as the models chapter (:func:`cpd_core.scan_blocks`, cached), one block alone;
* **composition share** of the features, :func:`composition_share`: the fraction of the variance of
  the standardised features that a linear fit on the element counts predicts on held-out molecules;
* **count read-back**, :func:`count_readback`: how well a cross-validated ridge probe reads each
  element's count back from the features (:math:`R^2`, mean over elements).

The paper reports MACE *losing* compositional information in its middle layers and recovering it in
the last one. :func:`dip_test` puts that to each model with three or more depths, for each measure, as
two paired differences (first − weakest middle layer, last − weakest middle layer, each with a paired
bootstrap interval over the same held-out molecules): the dip-and-recovery holds only where both
intervals lie above zero.

The molecules are those of the models chapter (pretrained models and their twins:
:func:`~cpd_core.experiments.probe_set.probe_set` on the same subset) and, for the networks trained
here, those of the task-alignment chapter (their held-out test split).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpd_core.errors import InputError

_LAYER = re.compile(r"^(?:(?P<emb>embedding)|layer(?P<k>\d+)|hidden(?P<h>\d+)|(?P<aev>aev))$")


def parse_block(name: str) -> dict:
    """Layer, depth, irrep order ``L`` and invariant of a block name (:mod:`cpd_core.extract`'s naming).

    ``depth`` is 0 for an embedding or an AEV, :math:`k` for ``layer<k>`` and ``hidden<k>``; ``None``
    for a block outside that scheme (for example ANI's ``aev/radial`` part), which profiles skip.

    Examples
    --------
    >>> parse_block("layer3/L1@pooled-norm")
    {'layer': 'layer3', 'depth': 3, 'L': 1, 'invariant': 'pooled-norm'}
    >>> parse_block("embedding/L0")["depth"], parse_block("hidden2")["depth"], parse_block("aev")["L"]
    (0, 2, 0)
    >>> parse_block("aev/radial")["depth"] is None
    True
    """
    base, _, invariant = name.partition("@")
    layer, _, irrep = base.partition("/")
    m = _LAYER.match(layer)
    if m is None or (irrep and not re.fullmatch(r"L\d+", irrep)):
        return {"layer": layer, "depth": None, "L": None, "invariant": invariant or None}
    depth = 0 if (m["emb"] or m["aev"]) else int(m["k"] or m["h"])
    return {"layer": layer, "depth": depth, "L": int(irrep[1:]) if irrep else 0, "invariant": invariant or None}


def profile_blocks(names: Sequence[str]) -> list[str]:
    """The scalar block of each depth, shallowest first: what a profile follows.

    Examples
    --------
    >>> profile_blocks(["layer2/L0", "layer1/L1@atom-norm", "embedding/L0", "layer1/L0", "aev/radial"])
    ['embedding/L0', 'layer1/L0', 'layer2/L0']
    """
    scalar = [(parse_block(n), n) for n in names]
    scalar = [(p["depth"], n) for p, n in scalar if p["depth"] is not None and p["L"] == 0 and not p["invariant"]]
    return [n for _, n in sorted(scalar)]


def _standardised(H: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance; constant columns dropped."""
    H = np.asarray(H, dtype=np.float64)
    sd = H.std(axis=0)
    keep = sd > 1e-12 * max(float(np.abs(H).max()), 1.0)
    return (H[:, keep] - H[:, keep].mean(axis=0)) / sd[keep]


def composition_share(H, C, fold_of, n_boot: int = 200, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float]:
    r"""Held-out fraction of the variance of the standardised features that is linear in composition.

    With :math:`Z` the features scaled column by column to unit variance (constant columns dropped),
    for each fold :math:`f` the least-squares fit of :math:`Z` on the composition :math:`C` (counts and
    an intercept) is made on the other folds and predicts :math:`\hat Z` on :math:`f`:

    .. math::

        s = \frac1K \sum_f \Big(1 - \frac{\sum_{i \in f} \lVert Z_i - \hat Z_i \rVert^2}
                                         {\sum_{i \in f} \lVert Z_i - \bar Z_f \rVert^2}\Big),

    a variance-weighted mean over features of their held-out :math:`R^2` on composition (about 0 for
    noise, 1 when every feature is a linear function of the counts). Held out rather than in-sample,
    so that noise features add no :math:`k/n`. The interval resamples the held-out structures within
    each fold, the fits and each fold's mean fixed: a ratio of per-structure sums, centred on the
    estimate (re-centring each replicate on its own mean would shift it by about :math:`(1-s)/n_f`,
    outside the interval when the features are many).

    Returns
    -------
    (share, lo, hi) : tuple of float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> C = np.column_stack([rng.integers(0, 9, 400), rng.integers(0, 4, 400), np.ones(400)])
    >>> H = np.column_stack([C[:, :2] @ [1.0, 2.0], rng.normal(size=400)])
    >>> s, lo, hi = composition_share(H, C, np.arange(400) % 5)
    >>> round(float(s), 1), bool(lo < s < hi)
    (0.5, True)
    """
    from cpd_core.intervals import percentile_interval

    value, reps = share_replicates(H, C, fold_of, n_boot=n_boot, seed=seed)
    lo, hi = percentile_interval(reps, level)
    return value, lo, hi


def share_replicates(H, C, fold_of, n_boot: int = 200, seed: int = 0) -> tuple[float, np.ndarray]:
    """:func:`composition_share` and its bootstrap replicates (shape ``(n_boot,)``).

    Two blocks on the same structures, folds, ``n_boot`` and ``seed`` resample the same structures in
    each replicate: their replicates can be differenced (paired).
    """
    H = np.asarray(H, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    fold_of = np.asarray(fold_of)
    if H.ndim != 2 or C.ndim != 2 or H.shape[0] != C.shape[0] or fold_of.shape != (H.shape[0],):
        raise InputError(f"H, C and fold_of must have the same rows, got {H.shape}, {C.shape} and {fold_of.shape}")
    Z = _standardised(H)
    rng = np.random.default_rng(seed)
    folds = [np.flatnonzero(fold_of == f) for f in np.unique(fold_of)]
    value, reps = 0.0, np.zeros(n_boot)
    for te in folds:
        tr = np.setdiff1d(np.arange(len(Z)), te)
        R = Z[te] - C[te] @ np.linalg.lstsq(C[tr], Z[tr], rcond=None)[0]
        sse, sst = np.sum(R ** 2, axis=1), np.sum((Z[te] - Z[te].mean(axis=0)) ** 2, axis=1)  # per structure
        value += 1.0 - sse.sum() / sst.sum()
        for start in range(0, n_boot, 100):
            pick = rng.integers(0, len(te), size=(min(100, n_boot - start), len(te)))
            reps[start:start + len(pick)] += 1.0 - sse[pick].sum(axis=1) / sst[pick].sum(axis=1)
    return value / len(folds), reps / len(folds)


@dataclass
class Readback:
    """Cross-validated read-back of element counts from one block.

    Attributes
    ----------
    r2 : float
        Mean over elements of the held-out :math:`R^2` (mean over folds) of each count.
    per_element : dict of str to float
    replicates : numpy.ndarray, shape (n_boot,)
        Fold-stratified bootstrap replicates of ``r2`` (:func:`cpd_core.intervals.bootstrap_r2`); two
        read-backs on the same molecules, folds and seed resample the same molecules (paired).
    """

    r2: float
    per_element: dict
    replicates: np.ndarray = field(repr=False)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        from cpd_core.intervals import percentile_interval

        return percentile_interval(self.replicates, level)


def count_readback(H, counts, fold_of, alphas=None, n_boot: int = 1000, seed: int = 0) -> Readback:
    r"""How well a linear probe reads each element's count back from features ``H``.

    For each element :math:`e` (a column of ``counts``), closed-form ridge (:class:`cpd_core.ridge.RidgeFolds`,
    standardised, penalty chosen on inner folds) predicts :math:`n_{se}` from :math:`H_s` on the folds
    ``fold_of``; the score is its held-out :math:`R^2` averaged over folds, then over elements. No
    composition is projected out (the target *is* composition): the probe's "composition" is the
    intercept alone. Held-out values are *not* clipped to the training range, unlike CPD's probe: a
    block of a few element embeddings mixed into many near-collinear columns (an embedding layer,
    mean-pooled) is read exactly by a linear map, and clipping each column separately breaks the
    cancellation between them (measured: held-out R² of −13 to −200 on such blocks with clipping,
    0.93 without).

    Parameters
    ----------
    H : array_like, shape (n, d)
    counts : pandas.DataFrame or array_like, shape (n, n_elements)
        Element counts; a DataFrame's column names label :attr:`Readback.per_element`. Columns
        that are constant within a training set are skipped.
    fold_of : array_like of int, shape (n,)

    Returns
    -------
    Readback

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> counts = pd.DataFrame({"C": rng.integers(1, 9, 300), "O": rng.integers(0, 4, 300)})
    >>> H = np.column_stack([counts["C"] + 0.1 * rng.normal(size=300), rng.normal(size=(300, 3))])
    >>> rb = count_readback(H, counts, np.arange(300) % 5)
    >>> round(rb.per_element["C"], 1), bool(rb.per_element["O"] < 0.1)
    (1.0, True)
    """
    from cpd_core.intervals import bootstrap_r2
    from cpd_core.ridge import RidgeFolds, as_alpha_grid

    names = list(counts.columns) if isinstance(counts, pd.DataFrame) else None
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise InputError(f"counts must be 2-D (structures × elements), got shape {counts.shape}")
    names = names or [f"element{j}" for j in range(counts.shape[1])]
    fold_of = np.asarray(fold_of)
    K = int(fold_of.max()) + 1
    varies = [j for j in range(counts.shape[1])
              if all(np.ptp(counts[fold_of != f, j]) > 0 and np.ptp(counts[fold_of == f, j]) > 0 for f in range(K))]
    if not varies:
        raise InputError("no element count varies within every fold: nothing to read back")
    grid = as_alpha_grid(alphas)
    ones = np.ones((len(counts), 1))
    base = None
    per_element, reps = {}, np.zeros(n_boot)
    for j in varies:
        y = counts[:, j]
        rf = base = RidgeFolds(H, ones, y, fold_of, clip=False) if base is None else base.retarget(y)
        oof, scores = np.empty(len(y)), []
        for f in range(K):
            fit = rf.fit([g for g in range(K) if g != f], f, grid, geom=True)
            oof[rf.rows[f]] = fit.predictions
            scores.append(float(fit.r2[fit.chosen]))
        per_element[names[j]] = float(np.mean(scores))
        reps += bootstrap_r2(y, fold_of, [oof], n_boot=n_boot, seed=seed)[:, 0]
    return Readback(float(np.mean(list(per_element.values()))), per_element, reps / len(varies))



def element_counts(data) -> pd.DataFrame:
    """Element counts of a data set's structures, one column per element symbol (increasing Z)."""
    from cpd_core.composition import composition

    comp = composition(data.numbers, intercept=False)
    return pd.DataFrame(comp.matrix, columns=list(comp.columns))


#: The two measures of composition in a layer: held-out share of feature variance, count read-back.
MEASURES = ("comp_share", "readback")


@dataclass
class ProfileRun:
    """What :func:`layer_profiles` computed.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (model, seed, depth): the probe set (``molecules``), the model's card (family,
        status, twin_of), ``depth`` and ``block``, its width ``d``, and for each target
        ``r2_geom <t>`` with ``_lo``/``_hi``; ``comp_share`` and ``readback`` with theirs.
    replicates : dict
        ``(model, seed, block, measure)`` → ``(value, bootstrap replicates)`` of ``"comp_share"`` and
        ``"readback"``, paired across the blocks of a probe set (:func:`dip_test`).
    n : dict
        Probe set label → molecules probed.
    """

    table: pd.DataFrame
    replicates: dict = field(repr=False)
    n: dict


def profile(models: Sequence[str], n: int | None = 500, seed: int = 0, rows=None, targets=("gap", "dipole"),
            cv: int = 5, twin_seeds: Sequence[int] = (0,), molecules: str = "QM9 subset", device: str = "auto",
            progress: bool = False) -> ProfileRun:
    """Profiles of ``models`` on one probe set (:func:`~cpd_core.experiments.probe_set.probe_set`).

    ``models``, ``n``, ``seed`` and ``rows`` as in :func:`~cpd_core.experiments.model_gradient.model_gradient`:
    with the same values, every block scan is read from the cache the models chapter wrote. Random-init
    twins run with each of ``twin_seeds``.
    """
    from tqdm import tqdm

    from cpd_core.datasets.qm9 import check_targets
    from cpd_core.decomposition import fold_labels
    from cpd_core.experiments.probe_set import probe_set
    from cpd_core.intervals import percentile_interval
    from cpd_core.models import REGISTRY
    from cpd_core.selection import scan_blocks

    targets = check_targets(targets)
    ps = probe_set(models, n=n, seed=seed, rows=rows)
    ys = ps.targets(targets)
    counts = element_counts(ps.data)
    fold_of = fold_labels(len(ps.data), cv, 0)
    rows_, replicates = [], {}
    for name, s in tqdm(ps.runs(twin_seeds), desc="layer profiles", disable=not progress):
        card = REGISTRY[name]
        blocks = ps.blocks(name, s, device=device, progress=progress)
        names = profile_blocks(blocks)
        scan = scan_blocks({b: blocks[b] for b in names}, ps.C, ys, cv=cv, seed=0, cache=True)
        for b in names:
            row = {"molecules": molecules, "model": name, "seed": s, "family": card.family, "status": card.status,
                   "twin_of": card.twin_of, "depth": parse_block(b)["depth"], "block": b, "d": blocks[b].shape[1]}
            for t in targets:
                res = scan.choose(t, among=[b]).result
                row[f"r2_geom {t}"], (row[f"r2_geom {t}_lo"], row[f"r2_geom {t}_hi"]) = res.r2_geom, res.ci["r2_geom"]
            rb = count_readback(blocks[b], counts, fold_of)
            replicates[(name, s, b, "comp_share")] = share_replicates(blocks[b], ps.C, fold_of)
            replicates[(name, s, b, "readback")] = rb.r2, rb.replicates
            for measure in MEASURES:
                value, reps = replicates[(name, s, b, measure)]
                row[measure], (row[f"{measure}_lo"], row[f"{measure}_hi"]) = value, percentile_interval(reps)
            rows_.append(row)
        del blocks, scan
    return ProfileRun(pd.DataFrame(rows_), replicates, {molecules: len(ps.data)})


def layer_profiles(models: Sequence[str] | None = None, archs: Sequence[str] | None = None, n: int | None = 500,
                   seed: int = 0, targets=("gap", "dipole"), cv: int = 5, twin_seeds: Sequence[int] = (0,),
                   device: str = "auto", progress: bool = False) -> ProfileRun:
    """Profiles of the models chapter's models on its subset, and of the networks trained here on their test split.

    Parameters
    ----------
    models : sequence of str, optional
        Pretrained models and twins (default: :func:`~cpd_core.experiments.model_gradient.default_models`),
        on the seeded QM9 subset of ``n`` molecules.
    archs : sequence of str, optional
        Architectures trained here (default: every one with both checkpoints,
        :func:`~cpd_core.experiments.task_alignment.trained_archs`; ``[]`` for none), each as its
        gap-trained, U0-trained and random-init twin, on ``n`` molecules of their held-out test split.
    """
    from cpd_core.experiments.probe_set import chapter_sets

    runs = [profile(ms, targets=targets, cv=cv, twin_seeds=twin_seeds, molecules=label, device=device,
                    progress=progress, **kw) for label, ms, kw in chapter_sets(models, archs, n=n, seed=seed)]
    return ProfileRun(pd.concat([r.table for r in runs], ignore_index=True),
                      {k: v for r in runs for k, v in r.replicates.items()}, {k: v for r in runs for k, v in r.n.items()})


def dip_test(run: ProfileRun, model: str, seed: int = 0, measure: str = "comp_share",
             level: float = 0.95) -> dict | None:
    r"""Does a measure of composition dip in a middle layer and recover in the last? Paired intervals.

    With :math:`r_k` the ``measure`` (:data:`MEASURES`) of depth :math:`k`'s scalar block and :math:`m`
    the middle depth with the lowest :math:`r`, the paired differences :math:`r_\text{first} - r_m`
    (*lost*) and :math:`r_\text{last} - r_m` (*recovered*), each replicate resampling the same held-out
    molecules for both layers. ``None`` for a model with fewer than three depths.

    Returns
    -------
    dict or None
        ``first``, ``middle``, ``last`` (blocks), ``lost`` and ``recovered`` with ``_lo`` and ``_hi``, and
        ``verdict``: ``"dip and recovery"`` when both intervals lie above zero; ``"dip, no recovery"``
        when only *lost* does; ``"no dip"`` when the middle holds more than the first layer (*lost*
        below zero); ``"not resolved"`` otherwise.

    Notes
    -----
    The middle layer is the weakest on the same molecules that score the differences, so both
    differences lean upwards (the minimum of noisy values is biased low): the test leans towards
    finding a dip and a recovery, and a verdict against them is conservative.
    """
    from cpd_core.intervals import percentile_interval

    if measure not in MEASURES:
        raise InputError(f"measure must be one of {MEASURES}, got {measure!r}")
    prof = run.table[(run.table["model"] == model) & (run.table["seed"] == seed)].sort_values("depth")
    if len(prof) < 3:
        return None
    first, last = prof["block"].iloc[0], prof["block"].iloc[-1]
    middle_rows = prof.iloc[1:-1]
    middle = middle_rows.loc[middle_rows[measure].idxmin(), "block"]
    rep = {b: run.replicates[(model, seed, b, measure)] for b in (first, middle, last)}
    out = {"model": model, "measure": measure, "first": first, "middle": middle, "last": last}
    for key, a in (("lost", first), ("recovered", last)):
        out[key] = rep[a][0] - rep[middle][0]
        out[f"{key}_lo"], out[f"{key}_hi"] = percentile_interval(rep[a][1] - rep[middle][1], level)
    if out["lost_lo"] > 0:
        out["verdict"] = "dip and recovery" if out["recovered_lo"] > 0 else "dip, no recovery"
    elif out["lost_hi"] < 0:
        out["verdict"] = "no dip"
    else:
        out["verdict"] = "not resolved"
    return out


#: Families with equivariant (L ≥ 1) features: where the paper's mid-layer claim about MACE is put first.
EQUIVARIANT_FAMILIES = ("MACE", "NequIP", "SO3krates", "SO3Net", "PaiNN", "ViSNet")


def dip_table(run: ProfileRun, measures: Sequence[str] = MEASURES, families: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`dip_test` of every model (of ``families``, if given) with three or more depths, first seed, per measure.

    Models with fewer depths are listed with the verdict ``"fewer than 3 depths"``.
    """
    first = run.table[run.table["seed"] == run.table["seed"].min()]
    seed = int(first["seed"].min()) if len(first) else 0
    if families is not None:
        first = first[first["family"].isin(families)]
    cards = first.drop_duplicates("model").set_index("model")[["molecules", "family", "status"]]
    rows = []
    for model, card in cards.iterrows():
        info = {"model": model, **card.to_dict(), "equivariant": card["family"] in EQUIVARIANT_FAMILIES,
                "depths": int((first["model"] == model).sum())}
        for m in measures:
            got = dip_test(run, model, seed=seed, measure=m)
            rows.append({**info, **(got or {"measure": m, "verdict": "fewer than 3 depths"})})
    return pd.DataFrame(rows)


def profile_facts(run: ProfileRun) -> dict:
    """The numbers the layer-profiles chapter's prose quotes (from tested functions, not notebook code)."""
    t = run.table
    first = t[t["seed"] == t["seed"].min()]
    dips = dip_table(run)
    trained = first[first["status"] != "random-init"]
    twins = first[first["status"] == "random-init"]
    facts = {"n_models": int(first["model"].nunique()), "n_blocks": len(first),
             "n_sets": "; ".join(f"{k}: {v:,} molecules" for k, v in run.n.items())}
    for label, sub in (("trained", trained), ("twin", twins)):
        ordered = sub.sort_values("depth")
        last, top = ordered.groupby("model").tail(1), ordered.groupby("model").head(1)
        for measure in MEASURES:
            for where, rows in (("first", top), ("last", last)):
                vals = rows[measure]
                facts[f"{label}_{measure}_{where}"] = (f"{vals.min():.2f} to {vals.max():.2f}" if len(vals) else "n/a")
    for measure in MEASURES:
        d = dips[dips["measure"] == measure] if len(dips) else dips
        tested = d[d["verdict"] != "fewer than 3 depths"] if len(d) else d
        facts[f"n_tested_{measure}"] = len(tested)
        for verdict in ("dip and recovery", "dip, no recovery", "no dip", "not resolved"):
            hit = tested[tested["verdict"] == verdict]["model"].tolist() if len(tested) else []
            facts[f"{measure}_{verdict.replace(',', '').replace(' ', '_')}"] = ", ".join(hit) if hit else "none"
    few = dips[dips["verdict"] == "fewer than 3 depths"]["model"].drop_duplicates().tolist() if len(dips) else []
    facts["too_shallow"] = ", ".join(few) if few else "none"
    deep = first.loc[first.groupby("model")["depth"].idxmax()].set_index("model")
    shallow = first.loc[first.groupby("model")["depth"].idxmin()].set_index("model")
    for target in [c.split(" ", 1)[1] for c in t.columns if c.startswith("r2_geom ") and not c.endswith(("_lo", "_hi"))]:
        col = f"r2_geom {target}"
        best = first.loc[first.groupby("model")[col].idxmax()].set_index("model")
        facts[f"best_last_{target}"] = int((best["depth"] == deep.loc[best.index, "depth"]).sum())
        facts[f"best_first_{target}"] = int((best["depth"] == shallow.loc[best.index, "depth"]).sum())
    return facts


__all__ = ["EQUIVARIANT_FAMILIES", "MEASURES", "ProfileRun", "Readback", "composition_share", "count_readback",
           "dip_table", "dip_test", "element_counts", "layer_profiles", "parse_block", "profile", "profile_blocks",
           "profile_facts", "share_replicates"]
