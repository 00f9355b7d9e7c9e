r"""One training protocol for every architecture: ``cpd train --arch ARCH --target {gap,U0}``.

The rules, the same for every network (only the peak learning rate is per architecture, the
value its authors used or, where that diverged in short runs, the nearest that did not):

* **data**: the seeded split of :mod:`cpd_core.training.data` (110,000 / 10,000 / 10,831);
  ``n_train``/``n_val``/``n_test`` take the first molecules of their parts for a smaller run;
* **loss**: mean absolute error of the standardised target, :math:`|\hat y - y| / \sigma`;
* **optimiser**: Adam, gradient norm clipped at 10, batches of 32 molecules drawn without
  replacement each epoch (seeded);
* **schedule**: linear warm-up over the first 2 % of the budget, then cosine decay to 1 % of
  the peak; the budget is ``max_epochs`` or ``max_minutes`` of wall time, *whichever ends
  first*, and the schedule follows whichever is further along;
* **weights kept**: an exponential moving average of the weights (decay 0.999, warmed up as
  :math:`\min(0.999, (1 + t)/(10 + t))`) is validated after every epoch; the best on validation
  MAE is kept, and training stops early after ``patience`` epochs without improvement;
* **outputs**: ``model.pt`` (the kept weights in float32, the architecture and the target
  normalisation; loadable with ``torch.load(weights_only=True)``) and ``manifest.json``
  (everything needed to judge and repeat the run, the test MAE included);
* **snapshots** (``snapshots=K``): the EMA weights, validated, after the first training step at
  which the progress through the budget (the quantity the schedule follows) reaches
  :math:`i/K`, :math:`i = 1..K` (mid-epoch too: a CPU run of one or two epochs still gets ``K``
  points; the last is the end of the run), in ``snapshots/step{S:07d}.pt`` (the format of
  ``model.pt``), listed in the manifest's ``"snapshots"`` with their step, epoch, epochs trained
  (a fraction mid-epoch), minutes and validation MAE; a run stopped early (patience) keeps those
  it reached;
* **resuming** (``resume=True``): ``state.pt`` (live and EMA weights, Adam's state, the best
  weights so far, counters, history, the batch-order and torch RNG states, the settings) lets a
  run continue for a new budget of ``max_epochs``/``max_minutes``. The new segment is a *warm
  restart*: the same warm-up and cosine schedule again over the new budget (a run that ended
  by its budget sits at 1 % of the peak rate, from which a decay-only schedule could not move);
  the patience count restarts, the best weights and the history carry over and epochs keep
  counting. Everything else (:data:`RESUMABLE` lists what may change) must be the same.
  Continuing a constant-rate run (``warmup=0``, ``final_lr=1``) over epochs reproduces the
  uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from cpd_core.errors import InputError
from cpd_core.models.base import resolve_device
from cpd_core.models.trained import (
    ARCHITECTURES,
    CHECKPOINT_FORMAT,
    TRAINED_TARGETS,
    build_network,
    checkpoint_dir,
)
from cpd_core.pooling import pool_atoms
from cpd_core.training.data import MAX_Z, SPLIT_SIZES, Normalisation, QM9Tensors, split_indices

#: Peak learning rate per architecture.
LEARNING_RATES = {"schnet": 5e-4, "dimenet++": 1e-3, "painn": 5e-4, "visnet": 5e-4, "mace": 5e-3}
#: Settings a resumed run may change: its budget, snapshots and where it runs.
RESUMABLE = ("max_epochs", "max_minutes", "patience", "snapshots", "device", "eval_batch_size")
#: Format tag of ``state.pt``.
STATE_FORMAT = "cpd-qm9-train-state/1"
#: How a resumed segment schedules its learning rate (recorded in the manifest).
RESTART_SCHEDULE = "warm restart: warm-up then cosine decay again over the new budget"


@dataclass
class TrainConfig:
    """Settings of one run (see the module docstring for what each rule does)."""

    arch: str
    target: str
    max_epochs: int = 1000
    max_minutes: float = 60.0
    patience: int = 30
    batch_size: int = 32
    lr: float | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    seed: int = 0
    split_seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 256
    ema_decay: float = 0.999
    grad_clip: float = 10.0
    warmup: float = 0.02
    final_lr: float = 0.01
    snapshots: int = 4
    hparams: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {self.arch!r}; known: {list(ARCHITECTURES)}")
        if self.target not in TRAINED_TARGETS:
            raise InputError(f"target must be one of {list(TRAINED_TARGETS)}, got {self.target!r}")
        for name in ("max_epochs", "batch_size", "eval_batch_size", "patience"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.snapshots < 0:
            raise InputError(f"snapshots must be 0 or more, got {self.snapshots}")
        if self.max_minutes <= 0:
            raise InputError(f"max_minutes must be positive, got {self.max_minutes}")
        for name, total in (("n_train", SPLIT_SIZES[0]), ("n_val", SPLIT_SIZES[1]), ("n_test", 10_831)):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= total:
                raise InputError(f"{name} must be between 1 and {total}, got {value}")
        if self.lr is None:
            self.lr = LEARNING_RATES[self.arch]


class Regressor(torch.nn.Module):
    r"""A network with its target normalisation: per-atom outputs → a prediction in eV.

    .. math::

        \hat y_s = \operatorname{pool}_{i \in s}\bigl(\sigma\, o_i + \mu_{Z_i}\bigr) + \mu

    computed in float64 (U0 is ~10⁴ eV; float32 would round it to meV).
    """

    def __init__(self, net: torch.nn.Module, norm: Normalisation):
        super().__init__()
        self.net = net
        self.norm = norm
        self.register_buffer("atomref", torch.tensor(norm.atomref, dtype=torch.float64), persistent=False)

    def forward(self, numbers, positions, batch, n_structures: int) -> torch.Tensor:
        out, _ = self.net(numbers, positions, batch)
        per_atom = self.norm.scale * out.double() + self.atomref[numbers]
        return pool_atoms(per_atom, batch, n_structures, self.norm.pooling) + self.norm.offset


def learning_rate(progress: float, peak: float, warmup: float = 0.02, final: float = 0.01) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` of the budget, then cosine decay to ``final * peak``.

    Examples
    --------
    >>> [round(learning_rate(p, 1.0), 3) for p in (0.0, 0.01, 0.02, 0.51, 1.0)]
    [0.0, 0.5, 1.0, 0.505, 0.01]
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return peak * progress / warmup
    cosine = 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))
    return peak * (final + (1 - final) * cosine)


@torch.no_grad()
def evaluate(model: Regressor, data: QM9Tensors, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predictions (eV) for the molecules at ``rows``, in that order."""
    was_training = model.training
    model.eval()
    out = []
    for chunk in torch.as_tensor(rows, device=data.device).split(batch_size):
        numbers, positions, batch, _ = data.batch(chunk)
        out.append(model(numbers, positions, batch, len(chunk)).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0)


def _mae_mev(model, data, rows, batch_size) -> float:
    return float(np.mean(np.abs(evaluate(model, data, rows, batch_size) - data.y[rows].cpu().numpy())) * 1000)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def train(config: TrainConfig, out_dir: str | Path | None = None, data: QM9Tensors | None = None,
          command: str | None = None, log=print, resume: bool = False) -> dict:
    """Train one network under the protocol; write ``model.pt``, ``manifest.json``, snapshots and ``state.pt``.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path, optional
        Where the files go (default :func:`~cpd_core.models.trained.checkpoint_dir`).
    data : QM9Tensors, optional
        The molecules (default all of QM9 for ``config.target``, on the run's device).
    command : str, optional
        The command line recorded in the manifest (default ``sys.argv``).
    log : callable
        Receives one line per epoch (``None``: silent).
    resume : bool
        Continue the run whose ``state.pt`` is in ``out_dir`` for the budget of ``config``
        (see the module docstring); the manifest then has ``"resumed_from"``.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    InputError
        If ``resume`` finds no ``state.pt``, or one of another run (architecture, target,
        hyper-parameters or a setting outside :data:`RESUMABLE`).
    """
    log = log or (lambda *_: None)
    out_dir = Path(out_dir or checkpoint_dir(config.arch, config.target))
    device = resolve_device(config.device)
    started = time.monotonic()
    net = build_network(config.arch, seed=config.seed, **config.hparams)
    previous = _read_state(out_dir, config, net.hparams) if resume else None
    data = QM9Tensors(config.target, device) if data is None else data
    parts = split_indices(len(data), config.split_seed,
                          SPLIT_SIZES if len(data) > sum(SPLIT_SIZES) else _small_split(len(data)))
    train_rows = parts["train"][:config.n_train]
    val_rows = parts["val"][:config.n_val]
    test_rows = parts["test"][:config.n_test]
    norm = Normalisation.fit(config.target, data.y[torch.as_tensor(train_rows, device=device)].cpu().numpy(),
                             data.counts(train_rows))
    model = Regressor(net, norm).to(device=device)
    params = [p for p in net.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history, best, best_state, best_epoch, step, done_minutes, commands = [], math.inf, None, 0, 0, 0.0, []
    snapshots, taken = [], {}  # manifest entries, and file -> weights of this segment's snapshots
    if previous is not None:
        net.load_state_dict(previous["weights"])
        with torch.no_grad():
            for e, saved in zip(ema, previous["ema"]):
                e.copy_(saved)
        optimizer.load_state_dict(previous["optimizer"])
        generator.set_state(previous["rng"]["batches"])
        torch.set_rng_state(previous["rng"]["torch"])
        history, step, commands, snapshots = (previous[k] for k in ("history", "step", "commands", "snapshots"))
        best, best_epoch, best_state = (previous["best"][k] for k in ("val_mae_meV", "epoch", "state_dict"))
        done_minutes = previous["train_minutes"]
    first = len(history)  # epochs before this segment
    budget_s = config.max_minutes * 60
    n_batches = math.ceil(len(train_rows) / config.batch_size)
    since_best, marks, stopped_by = 0, 0, "epochs"

    def snapshot(epoch: int, epochs: float, minutes: float, val_mae: float) -> None:
        """Keep the network's current (EMA) weights as the snapshot after ``step``."""
        snapshots.append({"file": f"snapshots/step{step:07d}.pt", "step": step, "epoch": epoch,
                          "epochs": round(epochs, 6), "minutes": minutes, "val_mae_meV": val_mae})
        taken[snapshots[-1]["file"]] = _cpu_float32(net.state_dict())

    train_started = time.monotonic()
    log(f"{config.arch} on {config.target}: {sum(p.numel() for p in params):,} parameters, "
        f"{len(train_rows):,} train / {len(val_rows):,} val / {len(test_rows):,} test molecules, {device}"
        + (f", resuming after epoch {first}" if previous else ""))
    for epoch in range(first + 1, first + config.max_epochs + 1):
        model.train()
        order = torch.as_tensor(train_rows)[torch.randperm(len(train_rows), generator=generator)].to(device)
        losses, out_of_time = [], False
        for i, chunk in enumerate(order.split(config.batch_size)):
            elapsed = time.monotonic() - train_started
            if elapsed >= budget_s:
                out_of_time = True
                break
            progress = max((epoch - first - 1 + i / n_batches) / config.max_epochs, elapsed / budget_s)
            # a mark short of the end reached part-way through the epoch (after i steps of it)
            if i and marks < config.snapshots - 1 and progress >= (marks + 1) / config.snapshots:
                marks = sum(progress >= k / config.snapshots for k in range(1, config.snapshots))
                with _ema_weights(params, ema):
                    snap_mae = _mae_mev(model, data, val_rows, config.eval_batch_size)
                    snapshot(epoch, epoch - 1 + i / n_batches, done_minutes + elapsed / 60, snap_mae)
                model.train()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(progress, config.lr, config.warmup, config.final_lr)
            numbers, positions, batch, y = data.batch(chunk)
            loss = ((model(numbers, positions, batch, len(chunk)) - y).abs() / norm.scale).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            step += 1
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.lerp_(p.detach(), 1 - decay)
            losses.append(loss.detach())
        if not losses:
            stopped_by = "time"
            break
        with _ema_weights(params, ema):
            val_mae = _mae_mev(model, data, val_rows, config.eval_batch_size)
            elapsed = time.monotonic() - train_started
            history.append({"epoch": epoch, "steps": step, "train_loss": float(torch.stack(losses).mean()),
                            "val_mae_meV": val_mae, "lr": optimizer.param_groups[0]["lr"],
                            "minutes": done_minutes + elapsed / 60, "partial": out_of_time})
            if val_mae < best:
                best, best_epoch, since_best = val_mae, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                since_best += 1
            reached = 1.0 if out_of_time else max((epoch - first) / config.max_epochs, elapsed / budget_s)
            crossed = sum(reached >= k / config.snapshots for k in range(1, config.snapshots + 1))
            if crossed > marks:  # the EMA weights, as validated
                marks = crossed
                snapshot(epoch, epoch - 1 + len(losses) / n_batches, history[-1]["minutes"], val_mae)
        log(f"epoch {epoch:4d}  loss {history[-1]['train_loss']:.4f}  val MAE {val_mae:9.2f} meV  "
            f"lr {history[-1]['lr']:.2e}  {history[-1]['minutes']:6.1f} min" + ("  (time)" if out_of_time else ""))
        if out_of_time or elapsed >= budget_s:
            stopped_by = "time"
            break
        if since_best >= config.patience:
            stopped_by = "patience"
            break
    train_minutes = done_minutes + (time.monotonic() - train_started) / 60
    if best_state is None:
        raise InputError(f"no training step fitted in max_minutes={config.max_minutes}")
    command = command or shlex.join(["cpd", *sys.argv[1:]])
    state = {"format": STATE_FORMAT, "arch": config.arch, "target": config.target, "hparams": net.hparams,
             "config": asdict(config), "weights": _cpu(net.state_dict()), "ema": [e.cpu() for e in ema],
             "optimizer": optimizer.state_dict(), "step": step, "epoch": len(history), "history": history,
             "best": {"val_mae_meV": best, "epoch": best_epoch, "state_dict": _cpu(best_state)},
             "snapshots": snapshots, "commands": [*commands, command], "train_minutes": train_minutes,
             "rng": {"batches": generator.get_state(), "torch": torch.get_rng_state()}}
    net.load_state_dict(best_state)
    test_mae = _mae_mev(model, data, test_rows, config.eval_batch_size)
    log(f"best epoch {best_epoch}: val MAE {best:.2f} meV, test MAE {test_mae:.2f} meV")
    total_minutes = state["total_minutes"] = (
        (previous["total_minutes"] if previous else 0.0) + (time.monotonic() - started) / 60)
    manifest = {
        "format": CHECKPOINT_FORMAT, "arch": config.arch, "target": config.target,
        "target_unit": "eV", "hparams": net.hparams,
        "n_parameters": sum(p.numel() for p in net.parameters()),
        "split": {"seed": config.split_seed, "sizes": [len(parts[k]) for k in ("train", "val", "test")],
                  "n_train": len(train_rows), "n_val": len(val_rows), "n_test": len(test_rows)},
        "protocol": {**{k: v for k, v in asdict(config).items() if k not in ("arch", "target", "hparams")},
                     "optimizer": "Adam", "loss": "L1 on the standardised target",
                     "schedule": "linear warm-up then cosine decay over the budget (epochs or wall time)"},
        "normalisation": norm.to_dict(),
        "result": {"val_mae_meV": best, "test_mae_meV": test_mae, "best_epoch": best_epoch,
                   "epochs": len(history), "steps": step, "stopped_by": stopped_by,
                   "train_minutes": train_minutes, "total_minutes": total_minutes},
        "device": _device_name(device), "torch": torch.__version__, "python": platform.python_version(),
        "command": command, "commands": state["commands"], "git_commit": _git_commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "snapshots": snapshots, "history": history,
    }
    if previous is not None:
        manifest["resumed_from"] = {
            "epochs": first, "steps": previous["step"], "train_minutes": done_minutes,
            "val_mae_meV": previous["best"]["val_mae_meV"], "best_epoch": previous["best"]["epoch"],
            "lr": history[first - 1]["lr"] if first else None, "schedule": RESTART_SCHEDULE}
    save(net, manifest, out_dir, snapshots=taken, state=state)
    return manifest


def _read_state(out_dir: Path, config: TrainConfig, hparams: dict) -> dict:
    """The ``state.pt`` in ``out_dir``, checked to be a run of ``config`` with network ``hparams``."""
    path = out_dir / "state.pt"
    if not path.is_file():
        raise InputError(f"--resume: no state.pt in {out_dir}, so no run to continue there "
                         "(runs from before --resume have none: train without --resume to start one)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputError(f"--resume: {path} is not a {STATE_FORMAT} file (written by `cpd train`)")
    if (state["arch"], state["target"]) != (config.arch, config.target):
        raise InputError(f"--resume: {path} is a {state['arch']} run on {state['target']}, "
                         f"not {config.arch} on {config.target}")
    asked, saved = {**asdict(config), "hparams": hparams}, {**state["config"], "hparams": state["hparams"]}
    differ = [f"{k} {saved.get(k)!r} (asked {v!r})" for k, v in asked.items()
              if k not in RESUMABLE and v != saved.get(k)]
    if differ:
        raise InputError(f"--resume: the run in {out_dir} has {', '.join(differ)}; only "
                         f"{', '.join(RESUMABLE)} may change (its command: {state['commands'][-1]})")
    return state


def _cpu(state_dict: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}


@contextlib.contextmanager
def _ema_weights(params: list, ema: list):
    """The averaged weights in the network for the ``with`` block; the live ones back after it."""
    live = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, live):
                p.copy_(v)


def _cpu_float32(state_dict: dict) -> dict:
    """A copy on the CPU, floating tensors in float32 (what ``model.pt`` and snapshots hold)."""
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in _cpu(state_dict).items()}


def _small_split(n: int) -> tuple[int, int]:
    """80/10/10 of a data set smaller than QM9 (tests, custom arrays)."""
    n_val = max(1, n // 10)
    return max(1, n - 2 * n_val), n_val


def save(net: torch.nn.Module, manifest: dict, out_dir: str | Path, snapshots: dict | None = None,
         state: dict | None = None) -> Path:
    """Write ``model.pt`` (float32 weights + what rebuilds the network), ``manifest.json``, snapshots, ``state.pt``.

    Parameters
    ----------
    net : torch.nn.Module
    manifest : dict
        Its ``"snapshots"`` (default none) list the snapshot files the folder keeps: others in
        ``snapshots/`` (a previous run's) are removed.
    out_dir : path
    snapshots : dict, optional
        Snapshot files to write, ``{"snapshots/epoch003.pt": state_dict}``.
    state : dict, optional
        What :func:`train` needs to resume, written to ``state.pt``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head = {"format": CHECKPOINT_FORMAT, "arch": manifest["arch"], "hparams": manifest["hparams"],
            "target": manifest["target"], "normalisation": manifest["normalisation"]}
    keep = {s["file"] for s in manifest.get("snapshots", [])}
    for old in (out_dir / "snapshots").glob("*.pt"):
        if old.relative_to(out_dir).as_posix() not in keep:
            old.unlink()
    for file, weights in (snapshots or {}).items():
        (out_dir / file).parent.mkdir(exist_ok=True)
        torch.save({**head, "state_dict": _cpu_float32(weights)}, out_dir / file)
    if state is not None:
        torch.save(state, out_dir / "state.pt")
    torch.save({**head, "state_dict": _cpu_float32(net.state_dict())}, out_dir / "model.pt")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir


__all__ = ["LEARNING_RATES", "MAX_Z", "RESUMABLE", "Regressor", "TrainConfig", "evaluate", "learning_rate", "save",
           "train"]
