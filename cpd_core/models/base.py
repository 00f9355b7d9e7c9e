r"""What every model adapter provides: a card, a batch of structures in, per-atom blocks out.

A model adapter (a *featurizer*) turns an :class:`AtomsBatch` — the atoms of several
structures laid end to end, with a ``batch`` index naming the structure of each atom —
into per-atom feature **blocks**, one per layer and irrep:

=====================  ==================  =============================================
block tensor shape     meaning             what the engine does with it
=====================  ==================  =============================================
``(N, d)``             invariant (L = 0)   pools it per structure (mean or sum)
``(N, c, 2L + 1)``     c channels of       makes it rotation invariant in two ways
                       degree L ≥ 1        (:mod:`cpd_core.extract`), then pools
=====================  ==================  =============================================

Block names are ``"<layer>/<irrep>"``: ``"layer1/L0"``, ``"layer1/L1"``, ... for
equivariant networks, ``"aev"``, ``"hidden1"``, ... for ANI. Layers count from 1 in
the order the network applies them.

Every adapter carries a :class:`ModelCard` (what the model is, where its weights come
from, whether it is the *original* model, an offline *stand-in* for one, or a
*random-init* twin), the atomic numbers it supports, and :meth:`Featurizer.spec`:
everything that determines its output, the weights' hash included, which keys the
feature cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from cpd_core.errors import InputError

#: Allowed values of :attr:`ModelCard.status`.
STATUSES = ("original", "stand-in", "random-init", "trained-here")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` → CUDA when available, else CPU; otherwise as given (checked)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here")
    return torch.device(device)


def shared_dir() -> Path:
    """Where read-only model files live: ``$CPD_SHARED_DIR``, else ``shared/`` beside the repository.

    The repository's sibling ``../shared`` holds what PyPI cannot ship (ANI model zoo,
    matgl checkpoints); users elsewhere point ``CPD_SHARED_DIR`` at their own copy.
    """
    env = os.environ.get("CPD_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


class WeightsNotFoundError(InputError):
    """A model's weights are not where the loader looked; the message says where and how to fix it."""


@dataclass(frozen=True)
class ModelCard:
    """What a registered model is.

    Attributes
    ----------
    name : str
        Registry name (``cpd models`` lists them).
    family : str
        Architectural family (``"MACE"``, ``"NequIP"``, ``"ANI"``, ...): the book groups by it.
    status : {"original", "stand-in", "random-init", "trained-here"}
        ``original``: the published weights; ``stand-in``: published weights of another model
        of the same family used because the original cannot be had offline (``stands_in_for``
        names it); ``random-init``: the same network untrained (``twin_of`` names the trained
        one); ``trained-here``: trained by this project.
    training_data : str
        What the weights were fit to (``"untrained"`` for twins).
    source : str
        Where the weights come from (package, file, URL).
    domain : str
        ``"molecules"``, ``"crystals"`` or ``"molecules, crystals"``: what it was trained on.
    build : callable
        ``build(**options) -> Featurizer``; imports its model stack only when called.
    stands_in_for, twin_of : str
        See ``status``.
    offline : bool
        Whether the weights can be had without a network (in a wheel, in ``../shared``).
    caveat : str
        A known problem with the model as it runs here (empty when none). Models with a
        caveat stay loadable but are left out of the book's default comparisons.
    qm9_overlap : str
        How the training data overlap QM9's chemical space (small organic molecules of H, C,
        N, O, F from the GDB enumerations), in a short statement; empty when no overlap is
        known (untrained twins, crystal models, handcrafted descriptors). A model fit to
        QM9-like molecules may have seen the probed molecules, or close relatives: probe it on
        held-out molecules (:func:`cpd_core.training.data.probe_rows`) and read its scores with that in mind.
    """

    name: str
    family: str
    status: str
    training_data: str
    source: str
    domain: str
    build: Callable = field(repr=False, compare=False)
    stands_in_for: str = ""
    twin_of: str = ""
    offline: bool = True
    caveat: str = ""
    qm9_overlap: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass
class AtomsBatch:
    """Structures laid end to end: the input every featurizer takes.

    Attributes
    ----------
    numbers : torch.Tensor
        (N,) int64 atomic numbers of all atoms.
    positions : torch.Tensor
        (N, 3) Cartesian coordinates in Å.
    batch : torch.Tensor
        (N,) int64 index of each atom's structure, non-decreasing, 0 … S − 1.
    n_structures : int
        S.
    cell : torch.Tensor or None
        (S, 3, 3) lattice vectors as rows (Å), for periodic structures; ``None`` for molecules.
    pbc : torch.Tensor or None
        (S, 3) bool periodicity per axis; ``None`` for molecules.
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    batch: torch.Tensor
    n_structures: int
    cell: torch.Tensor | None = None
    pbc: torch.Tensor | None = None

    @classmethod
    def from_arrays(cls, numbers: Sequence[np.ndarray], positions: Sequence[np.ndarray],
                    cells: Sequence[np.ndarray] | None = None, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> "AtomsBatch":
        """Concatenate per-structure arrays (atomic numbers, Å coordinates[, 3×3 cells]).

        Examples
        --------
        >>> b = AtomsBatch.from_arrays([[8, 1, 1], [6]], [np.zeros((3, 3)), np.ones((1, 3))])
        >>> b.batch.tolist(), b.n_structures, b.sizes.tolist()
        ([0, 0, 0, 1], 2, [3, 1])
        """
        sizes = np.fromiter((len(z) for z in numbers), dtype=np.int64, count=len(numbers))
        z = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.int64) for a in numbers]))
        r = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float64) for a in positions]))
        b = torch.repeat_interleave(torch.arange(len(sizes)), torch.from_numpy(sizes))
        cell = pbc = None
        if cells is not None:
            cell = torch.as_tensor(np.stack(cells), dtype=dtype, device=device)
            pbc = torch.ones((len(sizes), 3), dtype=torch.bool, device=device)
        return cls(z.to(device), r.to(device=device, dtype=dtype), b.to(device), len(sizes), cell, pbc)

    @property
    def sizes(self) -> torch.Tensor:
        """(S,) atoms per structure."""
        return torch.bincount(self.batch, minlength=self.n_structures)

    @property
    def ptr(self) -> torch.Tensor:
        """(S + 1,) offsets: the atoms of structure s are ``ptr[s]:ptr[s+1]``."""
        return torch.cat([self.sizes.new_zeros(1), torch.cumsum(self.sizes, 0)])

    def padded(self, pad_number: int = 0):
        """The batch as padded tensors: numbers (S, A), positions (S, A, 3), mask (S, A).

        Examples
        --------
        >>> b = AtomsBatch.from_arrays([[8, 1, 1], [6]], [np.zeros((3, 3)), np.ones((1, 3))])
        >>> z, r, m = b.padded()
        >>> z.tolist(), m.tolist()
        ([[8, 1, 1], [6, 0, 0]], [[True, True, True], [True, False, False]])
        """
        sizes = self.sizes
        width = int(sizes.max()) if self.n_structures else 0
        slot = torch.arange(len(self.batch), device=self.batch.device) - self.ptr[self.batch]
        z = self.numbers.new_full((self.n_structures, width), pad_number)
        r = self.positions.new_zeros((self.n_structures, width, 3))
        mask = torch.zeros((self.n_structures, width), dtype=torch.bool, device=self.batch.device)
        z[self.batch, slot] = self.numbers
        r[self.batch, slot] = self.positions
        mask[self.batch, slot] = True
        return z, r, mask

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """Per-atom rows (N, ...) of a padded (S, A, ...) tensor, in this batch's atom order."""
        slot = torch.arange(len(self.batch), device=self.batch.device) - self.ptr[self.batch]
        return padded[self.batch, slot]

    def to_ase(self) -> list:
        """The structures as :class:`ase.Atoms` (for adapters whose model reads ASE or pymatgen)."""
        from ase import Atoms

        ptr = self.ptr.tolist()
        z = self.numbers.cpu().numpy()
        r = self.positions.detach().cpu().double().numpy()
        out = []
        for s in range(self.n_structures):
            kw = {}
            if self.cell is not None:
                kw = dict(cell=self.cell[s].detach().cpu().double().numpy(), pbc=self.pbc[s].cpu().numpy())
            out.append(Atoms(numbers=z[ptr[s]:ptr[s + 1]], positions=r[ptr[s]:ptr[s + 1]], **kw))
        return out


_SEED_IN_SOURCE = re.compile(r"seed(\(| )0(\)?)$")


def seeded_card(card: ModelCard, seed: int) -> ModelCard:
    """A random-init ``card`` whose source names ``seed`` (the card itself for seed 0).

    Random-init cards end their source with ``"seed 0"`` or ``"manual_seed(0)"``: the seed of
    the default build. Builders that take ``seed=`` give their featurizer this card; a card
    that is not random-init refuses any seed but 0.

    Examples
    --------
    >>> card = ModelCard("x-random", family="X", status="random-init", training_data="untrained",
    ...                  source="X(**args), seed 0", domain="molecules", build=None, twin_of="x")
    >>> seeded_card(card, 2).source, seeded_card(card, 0) is card
    ('X(**args), seed 2', True)
    >>> seeded_card(card, -1)
    Traceback (most recent call last):
    ...
    cpd_core.errors.InputError: seed must be a non-negative integer, got -1
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if seed == 0:
        return card
    if card.status != "random-init":
        raise InputError(f"{card.name} is not a random-init twin: it takes no seed (got seed={seed})")
    if not _SEED_IN_SOURCE.search(card.source):
        raise ValueError(f"{card.name}: source {card.source!r} does not end with its seed")
    return replace(card, source=_SEED_IN_SOURCE.sub(rf"seed\g<1>{int(seed)}\g<2>", card.source))


def check_numbers(numbers: torch.Tensor, max_z: int, name: str) -> None:
    """Raise :class:`~cpd_core.errors.InputError` naming the atomic numbers outside ``0 … max_z − 1``.

    Examples
    --------
    >>> check_numbers(torch.tensor([1, 6, 8]), 10, "SchNetNet")
    >>> check_numbers(torch.tensor([1, 17]), 10, "SchNetNet")
    Traceback (most recent call last):
    ...
    cpd_core.errors.InputError: SchNetNet embeds atomic numbers below max_z = 10, got [17]
    """
    if bool(((numbers < 0) | (numbers >= max_z)).any()):
        bad = sorted({int(z) for z in numbers.tolist() if not 0 <= z < max_z})
        raise InputError(f"{name} embeds atomic numbers below max_z = {max_z}, got {bad}")


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's parameters and buffers, by name.

    Examples
    --------
    >>> torch.manual_seed(0); a = torch.nn.Linear(2, 2)  # doctest: +ELLIPSIS
    <...>
    >>> weights_hash(a) == weights_hash(a), len(weights_hash(a))
    (True, 16)
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                     if t.numel() else b"")
    return h.hexdigest()[:16]


class Featurizer:
    """Base class of model adapters.

    Subclasses set :attr:`card`, :attr:`elements` and :attr:`module` (the torch network, for
    device moves, parameter counts and the weights hash) and implement :meth:`features`.
    :meth:`spec` adds :meth:`options` (what else changes the output: layer choice, ensemble
    member, cutoff) to the weights hash.
    """

    card: ModelCard
    elements: tuple[int, ...] = tuple(range(1, 119))
    module: torch.nn.Module | None = None
    #: Seed a random-init twin's weights were drawn with (0 for every other model).
    seed: int = 0

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def n_parameters(self) -> int:
        """Number of weights of the network (0 for a weight-free descriptor)."""
        return 0 if self.module is None else sum(p.numel() for p in self.module.parameters())

    def options(self) -> dict:
        """Settings other than the weights that change the features."""
        return {}

    def spec(self) -> dict:
        """Everything that determines the output (keys the feature cache).

        A random-init twin drawn with a seed other than 0 adds ``"seed"`` (seed 0 leaves it
        out, so cache keys of features computed before twins took a seed stay valid; the
        weights hash tells the seeds apart anyway).
        """
        if not hasattr(self, "_weights_hash"):
            self._weights_hash = None if self.module is None else weights_hash(self.module)
        seed = {"seed": int(self.seed)} if self.seed else {}
        return {"model": self.name, "class": type(self).__qualname__, "weights": self._weights_hash,
                **seed, **self.options()}

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the network's weights (float32 for a weight-free descriptor)."""
        if self.module is not None:
            for p in self.module.parameters():
                if p.is_floating_point():
                    return p.dtype
        return torch.float32

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Featurizer":
        """Move the network to ``device`` and ``dtype`` (returns self).

        :func:`cpd_core.models.load` calls :meth:`spec` first, so the weights hash is that of
        the weights as loaded, whatever dtype they are cast to later.
        """
        if self.module is not None:
            self.module.to(device=device, dtype=dtype)
        return self

    def features(self, batch: AtomsBatch) -> dict[str, torch.Tensor]:
        """Per-atom blocks for ``batch`` (see the module docstring)."""
        raise NotImplementedError

    def __call__(self, batch: AtomsBatch) -> dict[str, torch.Tensor]:
        return self.features(batch)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.card.status}, {self.n_parameters:,} parameters>"


def split_irreps(x: torch.Tensor, irreps, prefix: str) -> dict[str, torch.Tensor]:
    """Split e3nn-ordered features (N, dim) into blocks ``prefix/L<l>`` of shape (N, c, 2l + 1).

    ``irreps`` is a sequence of ``(multiplicity, l)`` pairs in feature order (an
    ``e3nn.o3.Irreps`` works: its items unpack to ``(mul, ir)`` with ``ir.l``); e3nn
    stores each irrep's channels one after another, each as its 2l + 1 components.
    Multiple entries of the same l (e.g. ``0e`` and ``0o``) are concatenated along channels.
    Scalars (l = 0) come back as (N, c).

    Examples
    --------
    >>> x = torch.arange(2 * 7.).reshape(2, 7)        # 1x0e + 2x1o
    >>> {k: tuple(v.shape) for k, v in split_irreps(x, [(1, 0), (2, 1)], "layer1").items()}
    {'layer1/L0': (2, 1), 'layer1/L1': (2, 2, 3)}
    >>> split_irreps(x, [(1, 0), (2, 1)], "layer1")["layer1/L1"][0].tolist()
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    """
    irreps = [(mul, getattr(ir, "l", ir)) for mul, ir in irreps]
    total = sum(mul * (2 * ell + 1) for mul, ell in irreps)
    if total != x.shape[1]:
        raise ValueError(f"irreps cover {total} features but the tensor has {x.shape[1]}")
    parts: dict[int, list] = {}
    start = 0
    for mul, ell in irreps:
        width = mul * (2 * ell + 1)
        parts.setdefault(ell, []).append(x[:, start:start + width].reshape(len(x), mul, 2 * ell + 1))
        start += width
    out = {}
    for ell in sorted(parts):
        block = torch.cat(parts[ell], dim=1)
        out[f"{prefix}/L{ell}"] = block[..., 0] if ell == 0 else block
    return out
