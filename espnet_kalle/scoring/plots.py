"""PNG plots for RESULTS.md (matplotlib, Agg backend: no display needed on a server or in CI).

- metric bars per system (one panel per metric, std as error bars where it exists),
- metric bars per voice (voices on x, one bar per system),
- posterior mean / variance histograms of Flow-VAE latents (as in the paper's Flow-VAE figure),
- training curves (train and valid per logged key) parsed from ESPnet logs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from espnet_kalle.scoring.latents import LatentStats
from espnet_kalle.scoring.train_log import Curves

PathLike = Union[str, Path]

# (summary key, panel title, scale to display) for the bar charts
BAR_METRICS: List[Tuple[str, str, float]] = [
    ("wer", "WER (%) ↓", 100.0),
    ("sim_ref", "SIM to reference ↑", 1.0),
    ("sim_centroid", "SIM to voice centroid ↑", 1.0),
    ("voice_acc", "voice ID accuracy (%) ↑", 100.0),
    ("mcd", "MCD-DTW (dB) ↓", 1.0),
    ("log_f0_rmse", "log-F0 RMSE ↓", 1.0),
    ("vuv_error", "V/UV error (%) ↓", 100.0),
    ("dnsmos_ovrl", "DNSMOS OVRL ↑", 1.0),
    ("rtf", "real-time factor ↓", 1.0),
]
# Keys of ESPnet's reporter that are bookkeeping, not curves worth a panel.
_SKIP_KEYS = ("time", "total_count", "gpu_", "optim", "_lr", "iter_time", "clip", "grad_norm", "loss_scale")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, cols: int = 3) -> Tuple[int, int]:
    cols = min(cols, max(n, 1))
    return int(math.ceil(n / cols)), cols


def _present(groups: Sequence[dict]) -> List[Tuple[str, str, float]]:
    return [m for m in BAR_METRICS if any(_finite(g.get(m[0])) for g in groups)]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def plot_system_bars(per_system: Dict[str, dict], path: PathLike) -> bool:
    """One panel per metric, one bar per system. Returns False (and writes nothing) if there is no number."""
    metrics = _present(list(per_system.values()))
    if not metrics:
        return False
    plt = _plt()
    rows, cols = _grid(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    names = list(per_system)
    colors = plt.cm.tab10(np.arange(len(names)) % 10)
    for ax, (key, title, scale) in zip(axes.flat, metrics):
        vals = [per_system[s].get(key, math.nan) for s in names]
        errs = [per_system[s].get(key + "_std", 0.0) for s in names]
        x = np.arange(len(names))
        ax.bar(x, np.array(vals, dtype=float) * scale, yerr=np.array(errs, dtype=float) * scale, color=colors,
               capsize=3)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_voice_bars(per_voice: Dict[str, Dict[str, dict]], path: PathLike) -> bool:
    """One panel per metric; voices on the x axis, one coloured bar per system."""
    groups = [st for vs in per_voice.values() for st in vs.values()]
    metrics = _present(groups)
    if not metrics:
        return False
    plt = _plt()
    systems = list(per_voice)
    voices = sorted({v for vs in per_voice.values() for v in vs})
    rows, cols = _grid(len(metrics), 2)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0, 0.9 * len(voices) * max(len(systems), 1) / 2 + 3) * cols,
                                                  3.2 * rows), squeeze=False)
    width = 0.8 / max(len(systems), 1)
    x = np.arange(len(voices))
    for ax, (key, title, scale) in zip(axes.flat, metrics):
        for i, s in enumerate(systems):
            vals = [per_voice[s].get(v, {}).get(key, math.nan) for v in voices]
            ax.bar(x + (i - (len(systems) - 1) / 2) * width, np.array(vals, dtype=float) * scale, width, label=s)
        ax.set_xticks(x, voices, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(voices) - 0.5)  # keep the slots fixed when a system has no number for a metric
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_latent_histograms(stats: LatentStats, path: PathLike, title: str = "") -> None:
    """Histogram of posterior means (with the N(0, 1) prior drawn over it) and of posterior variances."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.hist(stats.mu, bins=100, density=True, alpha=0.75, color="tab:blue")
    grid = np.linspace(min(stats.mu.min(), -4), max(stats.mu.max(), 4), 200)
    a.plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), "k--", lw=1, label="N(0, 1)")
    a.set_title("posterior mean μ")
    a.legend(fontsize=8)
    var = np.clip(stats.var, 1e-8, None)
    lo, hi = math.floor(np.log10(var.min())), math.ceil(np.log10(var.max()))
    b.hist(var, bins=np.logspace(lo, max(hi, lo + 1), 80), alpha=0.75, color="tab:orange")
    b.set_xscale("log")
    b.xaxis.set_minor_formatter(plt.NullFormatter())
    b.axvline(1.0, color="k", ls="--", lw=1, label="prior variance 1")
    b.set_title("posterior variance σ²")
    b.legend(fontsize=8)
    fig.suptitle(title or f"Flow-VAE latents: {stats.files} files, {stats.frames} frames, D={stats.dim}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curve_keys(curves: Curves, limit: int = 9) -> List[str]:
    """Loss-like keys first (``loss`` leading), bookkeeping keys dropped, at most ``limit``."""
    keys = [k for k in curves.keys() if not any(s in k for s in _SKIP_KEYS)]
    keys.sort(key=lambda k: (k != "loss", "loss" not in k, k))
    return keys[:limit]


def plot_training_curves(curves: Curves, path: PathLike, title: str = "") -> bool:
    """One panel per key with a line per phase (train / valid). False if nothing plottable."""
    keys = curve_keys(curves)
    if not keys:
        return False
    plt = _plt()
    rows, cols = _grid(len(keys))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for phase, series in curves.series.items():
            pts = series.get(key)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=phase)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(curves.unit, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title or curves.source, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
