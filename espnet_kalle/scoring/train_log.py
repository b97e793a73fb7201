"""Training curves from ESPnet's logs: ``Nepoch results: [train] k=v, ... [valid] k=v, ...`` lines.

ESPnet's trainer prints one such line per epoch (``train.log``, or the ``*.log`` written by run.pl/slurm.pl).
Runs of very few epochs get their curve from the per-interval lines ``Nepoch:train:a-bbatch: k=v, ...`` instead.
Non-numeric values (``time=1 minute and 3 seconds``) are skipped; a resumed run that re-logs an epoch keeps the
last line for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Tuple, Union

_EPOCH = re.compile(r"(\d+)epoch results: (.*)$")
_BATCH = re.compile(r"(\d+)epoch:(\w+):(\d+)-(\d+)batch: (.*)$")
_SECTION = re.compile(r"\[(\w+)\]\s")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
_KV = re.compile(rf"([A-Za-z_][\w./-]*)=({_NUMBER})(?=\s*,|\s*$)")  # "time=1 hour, ..." is no number


@dataclass
class Curves:
    """{phase: {key: [(x, value), ...]}}; x is the epoch (or a fractional epoch for batch lines)."""

    source: str
    unit: str  # "epoch" or "batch interval"
    series: Dict[str, Dict[str, List[Tuple[float, float]]]] = field(default_factory=dict)

    def keys(self) -> List[str]:
        return sorted({k for d in self.series.values() for k in d})


def _pairs(text: str) -> Dict[str, float]:
    return {k: float(v) for k, v in _KV.findall(text)}


def parse_epoch_lines(lines: Iterable[str]) -> Dict[str, Dict[str, Dict[int, float]]]:
    """{phase: {key: {epoch: value}}} from the ``Nepoch results`` lines."""
    out: Dict[str, Dict[str, Dict[int, float]]] = {}
    for line in lines:
        m = _EPOCH.search(line)
        if not m:
            continue
        epoch, body = int(m.group(1)), m.group(2)
        starts = list(_SECTION.finditer(body))
        for i, s in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(body)
            for k, v in _pairs(body[s.end():end]).items():
                out.setdefault(s.group(1), {}).setdefault(k, {})[epoch] = v
    return out


def parse_batch_lines(lines: Iterable[str]) -> Dict[str, Dict[str, List[Tuple[float, float]]]]:
    """{phase: {key: [(epoch - 1 + interval_index, value)]}} from the per-interval lines."""
    raw: Dict[Tuple[int, str], List[Tuple[int, Dict[str, float]]]] = {}
    for line in lines:
        m = _BATCH.search(line)
        if m:
            raw.setdefault((int(m.group(1)), m.group(2)), []).append((int(m.group(4)), _pairs(m.group(5))))
    out: Dict[str, Dict[str, List[Tuple[float, float]]]] = {}
    for (epoch, phase), items in sorted(raw.items()):
        last = max(b for b, _ in items)
        for b, kv in items:
            for k, v in kv.items():
                out.setdefault(phase, {}).setdefault(k, []).append((epoch - 1 + b / last, v))
    return out


def find_logs(exp_dir: Union[str, Path]) -> List[Path]:
    """``train.log`` files (else any ``*.log``) under an experiment dir, shallowest first."""
    d = Path(exp_dir)
    logs = sorted(d.rglob("train.log")) or sorted(d.rglob("*.log"))
    return sorted(logs, key=lambda p: (len(p.parts), str(p)))


def load_curves(exp_dir: Union[str, Path]) -> List[Curves]:
    """One ``Curves`` per log file that has any numbers in it."""
    result: List[Curves] = []
    for log in find_logs(exp_dir):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        epochs = parse_epoch_lines(lines)
        n_epochs = len({e for d in epochs.values() for s in d.values() for e in s})
        if n_epochs >= 2:
            series = {ph: {k: sorted((float(e), v) for e, v in s.items()) for k, s in d.items()}
                      for ph, d in epochs.items()}
            result.append(Curves(str(log), "epoch", series))
            continue
        batches = parse_batch_lines(lines)
        if batches:
            result.append(Curves(str(log), "epoch (per logging interval)", batches))
        elif epochs:
            series = {ph: {k: sorted((float(e), v) for e, v in s.items()) for k, s in d.items()}
                      for ph, d in epochs.items()}
            result.append(Curves(str(log), "epoch", series))
    return result
