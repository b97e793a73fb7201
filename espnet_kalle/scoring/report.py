"""Aggregate per-utterance scores per system and per voice; write the TSV, summary JSON and RESULTS.md.

RESULTS.md follows ESPnet recipes: an environment section, then markdown tables (one row per system, then per
system x voice, then the WER error breakdown), the plots, and one line per scorer that was not available.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from espnet_kalle.scoring.deps import version
from espnet_kalle.scoring.runner import COLUMNS, METRICS, REFERENCE, VOICE_SIMS, ScoreRun, is_number

PathLike = Union[str, Path]

# (summary key, table header, per-utterance column or None, format, which metric produces it)
TABLE = [
    ("wer", "WER (%)", None, "pct", "wer"),
    ("sim_ref", "SIM ref", "sim_ref", "3f", "sim"),
    ("sim_centroid", "SIM voice", "sim_centroid", "3f", "sim"),
    ("sim_nearest", "SIM nearest", None, "3f", "sim"),
    ("voice_acc", "voice ID (%)", None, "pct", "sim"),
    ("mcd", "MCD (dB)", "mcd", "2f", "mcd"),
    ("log_f0_rmse", "log-F0 RMSE", "log_f0_rmse", "3f", "mcd"),
    ("vuv_error", "V/UV err (%)", "vuv_error", "pct", "mcd"),
    ("dnsmos_ovrl", "DNSMOS OVRL", "dnsmos_ovrl", "2f", "dnsmos"),
    ("dnsmos_sig", "SIG", "dnsmos_sig", "2f", "dnsmos"),
    ("dnsmos_bak", "BAK", "dnsmos_bak", "2f", "dnsmos"),
    ("dnsmos_p808", "P.808", "dnsmos_p808", "2f", "dnsmos"),
    ("rtf", "RTF", None, "3f", None),
]
MEAN_STD = {"sim_ref", "sim_centroid", "sim_nearest", "mcd", "log_f0_rmse", "dnsmos_ovrl"}  # shown as mean ± std


def _nums(rows: Iterable[dict], col: str) -> np.ndarray:
    return np.array([float(r[col]) for r in rows if is_number(r.get(col))], dtype=np.float64)


def aggregate(rows: Sequence[dict]) -> dict:
    """One group's numbers: corpus WER from summed counts, means (and stds) of per-utterance metrics."""
    ok = [r for r in rows if not r.get("error")]
    out: dict = {"utts": len(rows), "scored": len(ok), "failed": len(rows) - len(ok)}
    words = _nums(ok, "ref_words")
    if words.size:
        counts = {k: int(_nums(ok, k).sum()) for k in ("ref_words", "hits", "substitutions", "deletions",
                                                       "insertions")}
        out.update(counts)
        errs = counts["substitutions"] + counts["deletions"] + counts["insertions"]
        out["wer"] = errs / counts["ref_words"] if counts["ref_words"] else math.nan
        out["sentence_error"] = float(np.mean(_nums(ok, "wer") > 0))
    for key, _, col, _, _ in TABLE:
        if col is None:
            continue
        v = _nums(ok, col)
        if v.size:
            out[key] = float(v.mean())
            out[key + "_std"] = float(v.std())
    correct = _nums(ok, "voice_correct")
    if correct.size:
        out["voice_acc"] = float(correct.mean())
    out.update(nearest_voice_stats(ok))
    timed = [r for r in ok if is_number(r.get("synth_seconds")) and is_number(r.get("rtf")) and r["rtf"] > 0]
    if timed:  # total synthesis time / total synthesized audio (audio = time / rtf, as the rtf file said)
        synth = sum(float(r["synth_seconds"]) for r in timed)
        audio = sum(float(r["synth_seconds"]) / float(r["rtf"]) for r in timed)
        out["rtf"] = synth / audio if audio > 0 else math.nan
    return out


def nearest_voice_stats(rows: Sequence[dict]) -> dict:
    """The one voice a group of rows is closest to on average, and the similarity to it (mean and std).

    This is the issue's measure for a preset voice, which has no target: its utterances are compared with every
    voice's centroid and the voice with the highest mean similarity is its nearest voice. Choosing one voice for
    the whole group (not the best voice per utterance) keeps the max over voices from inflating the number.
    """
    sims: Dict[str, List[float]] = {}
    for r in rows:
        for voice, sim in (r.get(VOICE_SIMS) or {}).items():
            sims.setdefault(voice, []).append(float(sim))
    if not sims:
        return {}
    best = max(sims, key=lambda v: float(np.mean(sims[v])))
    return {"sim_nearest": float(np.mean(sims[best])), "sim_nearest_std": float(np.std(sims[best])),
            "sim_nearest_voice": best}


def summarize(rows: Sequence[dict]) -> Tuple[Dict[str, dict], Dict[str, Dict[str, dict]]]:
    """({system: numbers}, {system: {voice: numbers}}), systems in first-seen order."""
    systems: Dict[str, List[dict]] = {}
    for r in rows:
        systems.setdefault(r["system"], []).append(r)
    per_system = {s: aggregate(rs) for s, rs in systems.items()}
    per_voice: Dict[str, Dict[str, dict]] = {}
    for s, rs in systems.items():
        voices: Dict[str, List[dict]] = {}
        for r in rs:
            voices.setdefault(r["voice"], []).append(r)
        per_voice[s] = {v: aggregate(vr) for v, vr in sorted(voices.items())}
    return per_system, per_voice


# ------------------------------------------------------------------------------------------------- writing
def _fmt(stats: dict, key: str, style: str) -> str:
    v = stats.get(key)
    if v is None or not math.isfinite(v):
        return "-"
    if style == "pct":
        s = f"{100 * v:.1f}"
    else:
        s = f"{v:.{style[0]}f}"
    if key in MEAN_STD and key + "_std" in stats:
        s += f" ± {stats[key + '_std']:.{style[0]}f}"
    if key + "_voice" in stats:  # sim_nearest names its voice
        s += f" ({stats[key + '_voice']})"
    return s


def _columns(available: Iterable[str], groups: Iterable[dict]) -> List[tuple]:
    """Table columns whose metric ran and produced a number for at least one group."""
    groups = list(groups)
    avail = set(available)
    return [c for c in TABLE if (c[4] is None or c[4] in avail) and any(c[0] in g for g in groups)]


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["|" + "|".join(header) + "|", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["|" + "|".join(r) + "|" for r in rows]
    return "\n".join(lines)


def write_tsv(path: PathLike, rows: Sequence[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, delimiter="\t", extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _git_hash(cwd: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "-"
    except (OSError, subprocess.SubprocessError):
        return "-"


def environment() -> Dict[str, str]:
    return {
        "date": datetime.datetime.now().astimezone().strftime("%a %b %d %H:%M:%S %Z %Y"),
        "python version": platform.python_version(),
        "espnet version": version("espnet"),
        "espnet-kalle version": version("espnet-kalle"),
        "pytorch version": version("torch"),
        "Git hash": _git_hash(Path(__file__).resolve().parent),
    }


def write_results_md(
    path: PathLike,
    run: ScoreRun,
    per_system: Dict[str, dict],
    per_voice: Dict[str, Dict[str, dict]],
    title: str,
    plots: Dict[str, str],
    notes: Sequence[str] = (),
    latents: Optional[Dict[str, dict]] = None,
    espnet_images: Sequence[str] = (),
) -> None:
    """RESULTS.md: environment, system table, per-voice table, WER details, latents, plots, unavailable."""
    available = [m for m in METRICS if m in run.scorers]
    lines = ["<!-- Generated by kalle-score -->", "# RESULTS", "## Environments"]
    lines += [f"- {k}: `{v}`" for k, v in environment().items()]
    for m in METRICS:
        if m in run.scorers:
            lines.append(f"- {m} scorer: `{run.scorers[m]}`")
    lines += ["", f"## {title}", "", "### Systems", ""]
    cols = _columns(available, per_system.values())
    lines.append(markdown_table(["system", "Snt"] + [c[1] for c in cols],
                                [[s, str(st["scored"])] + [_fmt(st, c[0], c[3]) for c in cols]
                                 for s, st in per_system.items()]))
    lines += ["", f"`{REFERENCE}` is the ceiling: the reference audio itself (SIM ref: vs another utterance of "
              "the same speaker; SIM voice / voice ID: vs the speaker centroid without that utterance; SIM nearest: vs "
              "the one voice centroid the system's utterances are closest to on average, the measure for a system "
              "that speaks in one voice without a target, such as a preset; low for a system of many voices).", ""]
    voice_groups = [st for vs in per_voice.values() for st in vs.values()]
    vcols = _columns(available, voice_groups)
    lines += ["### Per voice", ""]
    lines.append(markdown_table(["system", "voice", "Snt"] + [c[1] for c in vcols],
                                [[s, v, str(st["scored"])] + [_fmt(st, c[0], c[3]) for c in vcols]
                                 for s, vs in per_voice.items() for v, st in vs.items()]))
    if "wer" in run.scorers:
        lines += ["", "### WER details", ""]
        rows = []
        for s, st in per_system.items():
            if "ref_words" in st:
                n = st["ref_words"]
                pct = lambda k, st=st, n=n: f"{100 * st[k] / n:.1f}" if n else "-"  # noqa: E731
                err = st["substitutions"] + st["deletions"] + st["insertions"]
                rows.append([s, str(st["scored"]), str(n), pct("hits"), pct("substitutions"), pct("deletions"),
                             pct("insertions"), f"{100 * err / n:.1f}" if n else "-",
                             f"{100 * st['sentence_error']:.1f}"])
        lines.append(markdown_table(["system", "Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err"], rows))
    if latents:
        lines += ["", "### Flow-VAE latents", ""]
        rows = [[name, str(s["files"]), str(s["frames"]), str(s["dim"]), f"{s['mu_mean']:.3f}",
                 f"{s['mu_std']:.3f}", f"{s['var_mean']:.4f}", f"{s['var_median']:.4f}",
                 f"{s['kl_per_frame']:.2f}", f"{s['active_dims']}/{s['dim']}"] for name, s in latents.items()]
        lines.append(markdown_table(["latents", "files", "frames", "D", "mu mean", "mu std", "var mean",
                                     "var median", "KL/frame (nats)", "active dims"], rows))
    partial = {s: c for s, c in run.coverage.items() if c[0] < c[1]}
    if partial:
        lines += ["", "Systems scored on a subset of the reference utterances: "
                  + ", ".join(f"{s}: {n}/{m}" for s, (n, m) in partial.items())]
    failed = {s: st["failed"] for s, st in per_system.items() if st["failed"]}
    if failed:
        lines += ["", "Utterances without a score (missing or unreadable audio, see scores.tsv): "
                  + ", ".join(f"{s}: {n}" for s, n in failed.items())]
    if plots or espnet_images:
        lines += ["", "### Plots", ""]
        lines += [f"![{name}]({rel})" for name, rel in plots.items()]
        lines += [f"- ESPnet training image: [{p}]({p})" for p in espnet_images]
    missing = [m for m in METRICS if m in run.unavailable]
    if missing or notes:
        lines += ["", "### Not available", ""]
        lines += [f"- {m}: {run.unavailable[m]}" for m in missing]
        lines += [f"- {n}" for n in notes]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_summary_json(path: PathLike, run: ScoreRun, per_system: dict, per_voice: dict,
                       extra: Optional[dict] = None) -> None:
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    doc = {"systems": per_system, "per_voice": per_voice, "scorers": run.scorers,
           "unavailable": dict(run.unavailable),
           "scorer_seconds": {m: {"total": s, "calls": run.calls.get(m, 0)} for m, s in run.seconds.items()},
           "coverage": {s: {"scored": n, "references": m} for s, (n, m) in run.coverage.items()},
           "environment": environment(), **(extra or {})}
    Path(path).write_text(json.dumps(clean(doc), indent=2) + "\n", encoding="utf-8")


def write_report(
    out_dir: PathLike,
    run: ScoreRun,
    title: str = "scoring",
    latents: Sequence[PathLike] = (),
    train_log_dirs: Sequence[PathLike] = (),
) -> Dict[str, Path]:
    """Everything a scoring run leaves behind: scores.tsv, summary.json, plots/*.png, RESULTS.md."""
    from espnet_kalle.scoring import plots
    from espnet_kalle.scoring.latents import load_latent_stats
    from espnet_kalle.scoring.train_log import load_curves

    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    per_system, per_voice = summarize(run.rows)
    written: Dict[str, Path] = {"tsv": out / "scores.tsv"}
    write_tsv(written["tsv"], run.rows)

    figs: Dict[str, str] = {}
    if plots.plot_system_bars(per_system, out / "plots" / "metrics_per_system.png"):
        figs["metrics per system"] = "plots/metrics_per_system.png"
    if plots.plot_voice_bars(per_voice, out / "plots" / "metrics_per_voice.png"):
        figs["metrics per voice"] = "plots/metrics_per_voice.png"

    notes: List[str] = []
    latent_summary: Dict[str, dict] = {}
    for i, scp in enumerate(latents):
        name = Path(scp).parent.name or f"latents{i}"
        stats = load_latent_stats(scp)
        latent_summary[name] = stats.summary()
        rel = f"plots/latents_{i}_{name}.png"
        plots.plot_latent_histograms(stats, out / rel, f"Flow-VAE latents ({scp})")
        figs[f"latents {name}"] = rel

    espnet_images: List[str] = []
    for d in train_log_dirs:
        curves = load_curves(d)
        if not curves:
            notes.append(f"training curves: no ESPnet 'epoch results' lines found under {d}")
        for j, c in enumerate(curves):
            tag = f"{Path(d).name}_{j}"
            rel = f"plots/train_{tag}.png"
            if plots.plot_training_curves(c, out / rel, f"{c.source}"):
                figs[f"training {tag}"] = rel
        images = Path(d) / "images"
        if images.is_dir():
            espnet_images += [str(p) for p in sorted(images.glob("*.png"))]

    written["results"] = out / "RESULTS.md"
    write_results_md(written["results"], run, per_system, per_voice, title, figs, notes,
                     latent_summary or None, espnet_images)
    written["summary"] = out / "summary.json"
    write_summary_json(written["summary"], run, per_system, per_voice,
                       {"latents": latent_summary, "plots": figs})
    return written
