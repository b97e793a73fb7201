"""Merge the scoring results of several LM experiments into one side-by-side table (local/compare_heads.sh).

    python -m espnet_kalle.recipe.compare --exp gaussian_kl=exp/lm_heads_mini_gaussian_kl \
        --exp melle=exp/lm_heads_mini_melle --exp energy_distance=exp/lm_heads_mini_energy_distance \
        --inference_tag compare_heads [--test_sets test] [--system clone] --out exp/compare_heads/RESULTS.md

Stage 9 (``kalle-score``) leaves ``<lm exp>/<inference tag>/<set>/scoring/summary.json`` with one entry per decode
system;
this reads it rather than RESULTS.md, so the numbers are the unrounded ones. Each experiment has several decode
systems; the main table compares one of them (default ``clone``: every test sentence in its speaker's cloned voice,
the same task for every model, whereas preset voices are each model's own random draws). Every system follows in
a second table, and the references (the same audio for every experiment) close the main table as the ceiling.

Parameters are counted from the experiment's model file (a packed ``lm/model.pth`` of stage 7, else ESPnet's
checkpoints; every checkpoint of an experiment has the same parameters), memory-mapped, so a 1B model costs no
RAM. Next to RESULTS.md, ``summary.json`` holds the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from espnet_kalle.scoring.report import markdown_table
from espnet_kalle.scoring.runner import REFERENCE

# (summary.json key, column header, format): WER as a percentage, the rest as kalle-score reports them.
METRICS: List[Tuple[str, str, str]] = [
    ("wer", "WER (%)", "pct"),
    ("sim_ref", "SIM", ".3f"),
    ("mcd", "MCD (dB)", ".2f"),
    ("dnsmos_ovrl", "DNSMOS", ".2f"),
    ("rtf", "RTF", ".3f"),
]
# Model files that hold the trained LM, best first (stage 7's packed copies, then ESPnet's own); glob patterns.
MODEL_FILES = ("packed_*/lm/model.pth", "valid.loss.best.pth", "latest.pth")
DEFAULT_SYSTEM = "clone"
LEGEND = ("WER: ASR word error rate; SIM: speaker similarity to the reference recording; MCD: mel-cepstral distortion "
          "to the reference; DNSMOS: OVRL; RTF: synthesis time / audio time (comparable when the heads decoded on the "
          "same hardware); parameters: the LM (backbone + head); head parameters: the head alone.")


@dataclass
class Experiment:
    """One compared LM: its label (the head), its exp dir and what was read from it."""

    label: str
    exp_dir: Path
    decode_dir: Path  # <exp_dir>/<inference tag>: stage 8-9 outputs per test set
    head: str = "gaussian_kl"
    lm_conf: Optional[dict] = None
    config_source: str = ""
    parameters: Optional[Tuple[int, int]] = None  # (LM incl. head, head alone)
    summaries: Dict[str, Optional[dict]] = field(default_factory=dict)  # test set -> summary.json (None: missing)


def parse_exp(spec: str) -> Tuple[str, Path]:
    """``label=exp_dir`` (the driver's form) or a bare exp dir, labelled by its name."""
    label, sep, path = spec.partition("=")
    if not sep:
        return Path(spec).name.removeprefix("lm_"), Path(spec)
    if not label or not path:
        raise ValueError(f"--exp expects LABEL=EXP_DIR, got {spec!r}")
    return label, Path(path)


def summary_path(decode_dir: Path, test_set: str) -> Path:
    """Where kalle.sh's stage 9 writes the scoring summary of one test set (decode_dir: <lm exp>/<inference tag>)."""
    return decode_dir / test_set / "scoring" / "summary.json"


def read_summary(path: Path) -> Optional[dict]:
    """summary.json, or None when that experiment was not scored (the table then shows '-')."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_train_config(exp_dir: Path) -> dict:
    """ESPnet's config.yaml of the experiment (empty if the LM stage has not written it yet)."""
    path = exp_dir / "config.yaml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def lm_key(key: str) -> Optional[str]:
    """The KalleLM-relative name of a state-dict key ("tts.lm.x" in ESPnet files, "lm.x" in bare ones), or None."""
    key = key.removeprefix("tts.")
    return key[len("lm."):] if key.startswith("lm.") else None


def count_lm_parameters(state: Dict[str, Any]) -> Tuple[int, int]:
    """(LM parameters incl. its head, head parameters) of a model state dict (KalleLM has no buffers in it)."""
    total = head = 0
    for key, value in state.items():
        name = lm_key(key)
        if name is None or not hasattr(value, "numel"):
            continue
        total += value.numel()
        if name.startswith("head."):
            head += value.numel()
    return total, head


def lm_parameters(exp_dir: Path) -> Optional[Tuple[int, int]]:
    """Parameter counts from the first model file the experiment has (None before training finished)."""
    from espnet_kalle.checkpoint import load_state_dict

    for pattern in MODEL_FILES:
        for path in sorted(exp_dir.glob(pattern)):
            return count_lm_parameters(load_state_dict(path, "LM model file", mmap=True))
    return None


def load_experiment(label: str, exp_dir: Path, test_sets: Sequence[str], inference_tag: str) -> Experiment:
    """Everything the tables need from one exp dir; missing pieces stay None (shown as '-')."""
    config = read_train_config(exp_dir)
    tts_conf = config.get("tts_conf") or {}
    return Experiment(
        label=label,
        exp_dir=exp_dir,
        decode_dir=exp_dir / inference_tag,
        head=tts_conf.get("head", "gaussian_kl"),
        lm_conf=tts_conf.get("lm_conf"),
        config_source=str(config.get("config") or ""),
        parameters=lm_parameters(exp_dir),
        summaries={s: read_summary(summary_path(exp_dir / inference_tag, s)) for s in test_sets},
    )


# ------------------------------------------------------------------------------------------------ formatting
def fmt_metric(stats: Optional[dict], key: str, style: str) -> str:
    value = (stats or {}).get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{100 * value:.1f}" if style == "pct" else format(value, style)


def fmt_count(n: Optional[int]) -> str:
    """Millions with two decimals: enough to tell heads apart on a shared backbone."""
    return "-" if n is None else f"{n / 1e6:.2f} M"


def metric_cells(stats: Optional[dict]) -> List[str]:
    return [fmt_metric(stats, key, style) for key, _, style in METRICS]


def system_stats(exp: Experiment, test_set: str, system: str) -> Optional[dict]:
    summary = exp.summaries.get(test_set)
    return (summary or {}).get("systems", {}).get(system)


def main_table(exps: Sequence[Experiment], test_set: str, system: str) -> str:
    """One row per experiment for ``system``, then the references as the ceiling."""
    header = ["head"] + [h for _, h, _ in METRICS] + ["parameters", "head parameters"]
    rows = []
    for e in exps:
        params = e.parameters or (None, None)
        rows.append([e.label] + metric_cells(system_stats(e, test_set, system))
                    + [fmt_count(params[0]), fmt_count(params[1])])
    reference = next(filter(None, (system_stats(e, test_set, REFERENCE) for e in exps)), None)
    if reference is not None:
        rows.append([f"{REFERENCE} (ceiling)"] + metric_cells(reference) + ["-", "-"])
    return markdown_table(header, rows)


def all_systems_table(exps: Sequence[Experiment], test_set: str) -> str:
    """Every decode system of every experiment (presets, clone, TTT), for a closer look."""
    header = ["head", "system", "Snt"] + [h for _, h, _ in METRICS]
    rows = []
    for e in exps:
        for name, stats in ((e.summaries.get(test_set) or {}).get("systems") or {}).items():
            if name != REFERENCE:
                rows.append([e.label, name, str(stats.get("scored", "-"))] + metric_cells(stats))
    return markdown_table(header, rows)


def footing_notes(exps: Sequence[Experiment], test_sets: Sequence[str]) -> List[str]:
    """What would make the comparison unequal: other backbones, other scorers, experiments not scored yet."""
    notes = []
    backbones = {json.dumps(e.lm_conf, sort_keys=True) for e in exps if e.lm_conf is not None}
    if len(backbones) > 1:
        notes.append("the experiments have different backbones (tts_conf.lm_conf): not an equal comparison")
    for s in test_sets:
        scorers = {json.dumps(sm.get("scorers"), sort_keys=True) for e in exps if (sm := e.summaries.get(s))}
        if len(scorers) > 1:
            notes.append(f"{s}: the experiments were scored with different scorers (see their RESULTS.md)")
        for e in exps:
            if e.summaries.get(s) is None:
                notes.append(f"{s}: {e.label} has no scoring results ({summary_path(e.decode_dir, s)} is missing)")
    for e in exps:
        if e.parameters is None:
            notes.append(f"{e.label}: no model file under {e.exp_dir} ({', '.join(MODEL_FILES)}): parameters unknown")
    return notes


def write_results(out: Path, exps: Sequence[Experiment], test_sets: Sequence[str], system: str) -> None:
    """RESULTS.md (ESPnet style: generated marker, sections, markdown tables) plus summary.json."""
    lines = ["<!-- Generated by espnet_kalle.recipe.compare (local/compare_heads.sh) -->", "# RESULTS: LM heads", "",
             "One row per LM experiment of the same recipe run (data, Flow-VAE latents, decoding, scoring); "
             "local/compare_heads.sh gives them the same backbone and training too, so only the head differs.", ""]
    lines += [f"- {e.label}: `{e.exp_dir}` (head `{e.head}`"
              + (f", config `{e.config_source}`)" if e.config_source else ")") for e in exps]
    for s in test_sets:
        details = ", ".join(f"`{summary_path(e.decode_dir, s).with_name('RESULTS.md')}`" for e in exps)
        lines += ["", f"## {s}: system `{system}`", "", main_table(exps, s, system), "",
                  f"{LEGEND} Details per system: {details}.",
                  "", f"### {s}: every decode system", "", all_systems_table(exps, s)]
    notes = footing_notes(exps, test_sets)
    if notes:
        lines += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out.with_name("summary.json").write_text(json.dumps(summary_doc(exps, test_sets, system), indent=2) + "\n",
                                             encoding="utf-8")


def summary_doc(exps: Sequence[Experiment], test_sets: Sequence[str], system: str) -> dict:
    """The main tables' numbers, machine-readable (unrounded; parameters exact)."""
    doc: Dict[str, Any] = {"system": system, "experiments": {}}
    for e in exps:
        params = e.parameters or (None, None)
        doc["experiments"][e.label] = {
            "exp_dir": str(e.exp_dir), "head": e.head, "parameters": params[0], "head_parameters": params[1],
            "test_sets": {s: {k: (system_stats(e, s, system) or {}).get(k) for k, _, _ in METRICS} for s in test_sets},
        }
    return doc


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", action="append", required=True, metavar="LABEL=EXP_DIR",
                   help="an LM experiment dir (exp/lm_<tag>) and its label in the table; repeat per head")
    p.add_argument("--inference_tag", required=True,
                   help="decoding dir name of stages 8-9 (kalle.sh --inference_tag): <exp>/<tag>/<test set>")
    p.add_argument("--test_sets", nargs="+", default=["test"])
    p.add_argument("--system", default=DEFAULT_SYSTEM, help="decode system of the main table (clone, ttt, preset_*)")
    p.add_argument("--out", type=Path, required=True, help="RESULTS.md to write (summary.json goes beside it)")
    args = p.parse_args(argv)
    try:
        specs = [parse_exp(s) for s in args.exp]
    except ValueError as e:
        p.error(str(e))
    exps = [load_experiment(label, path, args.test_sets, args.inference_tag) for label, path in specs]
    write_results(args.out, exps, args.test_sets, args.system)
    for note in footing_notes(exps, args.test_sets):
        print(f"compare: {note}", file=sys.stderr)
    print(f"compare: {len(exps)} experiments -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
