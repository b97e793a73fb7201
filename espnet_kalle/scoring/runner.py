"""Score systems against a reference set, one row per (system, utterance); the references are a system too.

The references are scored as the ceiling ("reference"): ASR WER of the recorded (teacher) audio, similarity of
each reference to *another* utterance of its speaker and to its speaker's centroid computed without it, and
DNSMOS. MCD / F0 need a second rendering of the same text, so they are left empty there.

A scorer whose package is missing is recorded once in ``unavailable`` and its columns stay empty; an unreadable
file fills that row's ``error`` and the run goes on. A system is scored on the reference utterances it has audio
for (a TTT system may cover one speaker only); ``coverage`` records how many.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_kalle.audio import AudioError, load_audio
from espnet_kalle.scoring.data import HypSet, RefSet
from espnet_kalle.scoring.deps import ScorerUnavailable

log = logging.getLogger("kalle-score")

SAMPLE_RATE = 16000  # every scorer works at 16 kHz (the model's rate, pocketsphinx's, resemblyzer's, DNSMOS's)
METRICS = ("wer", "sim", "mcd", "dnsmos")
REFERENCE = "reference"
VOICE_SIMS = "voice_sims"  # row key: {voice: cosine to its centroid}

COLUMNS = [
    "system", "utt_id", "voice", "ref_speaker", "duration", "ref_text", "hyp_text", "ref_words", "hits",
    "substitutions", "deletions", "insertions", "wer", "sim_ref", "sim_centroid", "nearest_voice",
    "voice_correct", "mcd", "log_f0_rmse", "vuv_error", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak",
    "dnsmos_p808", "synth_seconds", "rtf", "error",
]


@dataclass
class ScoreRun:
    rows: List[dict]
    unavailable: Dict[str, str] = field(default_factory=dict)  # metric -> reason
    scorers: Dict[str, str] = field(default_factory=dict)  # metric -> tool name and version
    seconds: Dict[str, float] = field(default_factory=dict)  # metric -> total time spent
    calls: Dict[str, int] = field(default_factory=dict)
    coverage: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # system -> (utterances with audio, refs)


class _Scorers:
    """Builds each scorer on first use; remembers why one is unavailable and how long each one took."""

    def __init__(self, metrics: Sequence[str], whisper: Optional[str], run: ScoreRun):
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
        self.metrics, self.whisper, self.run = list(metrics), whisper, run
        self._built: Dict[str, object] = {}

    def get(self, metric: str):
        if metric not in self.metrics or metric in self.run.unavailable:
            return None
        if metric not in self._built:
            try:
                self._built[metric] = build_scorer(metric, self.whisper)
            except ScorerUnavailable as e:
                self.run.unavailable[metric] = str(e)
                log.warning("%s: %s", metric, e)
                return None
            self.run.scorers[metric] = self._built[metric].name
        return self._built[metric]

    def timed(self, metric: str, fn: Callable, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.run.seconds[metric] = self.run.seconds.get(metric, 0.0) + time.perf_counter() - start
            self.run.calls[metric] = self.run.calls.get(metric, 0) + 1


@dataclass
class _Named:
    name: str


@functools.cache
def build_scorer(metric: str, whisper: Optional[str] = None):
    """The scorer object of one metric, built once per process (models take seconds to load)."""
    from espnet_kalle.scoring.deps import require, version

    if metric == "wer":
        from espnet_kalle.scoring.asr_wer import make_asr

        require("jiwer")
        return make_asr(whisper)
    if metric == "sim":
        from espnet_kalle.scoring.speaker_sim import SpeakerEncoder

        return SpeakerEncoder()
    if metric == "mcd":
        require("pyworld")
        return _Named(f"pyworld {version('pyworld')} (dio+stonemask, CheapTrick, own mel-cepstrum, DTW)")
    if metric == "dnsmos":
        from espnet_kalle.scoring.dnsmos import DNSMOS

        return DNSMOS()
    raise ValueError(f"unknown metric {metric!r}")


def _empty_row(system: str, utt: str) -> dict:
    row = {c: "" for c in COLUMNS}
    row.update(system=system, utt_id=utt)
    return row


def _fill_wer(row: dict, sc: _Scorers, wav: np.ndarray, text: str) -> None:
    asr = sc.get("wer")
    if asr is None or not text.strip():
        return
    from espnet_kalle.scoring.asr_wer import word_errors

    hyp = sc.timed("wer", asr.transcribe, wav, SAMPLE_RATE)
    e = word_errors(text, hyp)
    row.update(hyp_text=hyp, ref_words=e.ref_words, hits=e.hits, substitutions=e.substitutions,
               deletions=e.deletions, insertions=e.insertions, wer=e.wer)


def _fill_dnsmos(row: dict, sc: _Scorers, wav: np.ndarray) -> None:
    m = sc.get("dnsmos")
    if m is not None:
        for k, v in sc.timed("dnsmos", m.score, wav, SAMPLE_RATE).items():
            row[f"dnsmos_{k}"] = v


def _fill_sim(row: dict, emb: np.ndarray, ref_emb: Optional[np.ndarray], cents: Dict[str, np.ndarray],
              voice: str) -> None:
    from espnet_kalle.scoring.speaker_sim import cosine, most_similar, voice_similarities

    if ref_emb is not None:
        row["sim_ref"] = cosine(emb, ref_emb)
    sims = voice_similarities(emb, cents)
    if voice in sims:
        row["sim_centroid"] = sims[voice]
    if sims:
        best, _ = most_similar(sims)
        row["nearest_voice"] = best
        # Similarity to every voice (not a TSV column): a system's nearest voice is chosen over all its rows.
        row[VOICE_SIMS] = sims
        if voice in cents:
            row["voice_correct"] = int(best == voice)


def score_systems(
    ref: RefSet,
    hyps: Sequence[HypSet],
    metrics: Sequence[str] = METRICS,
    whisper: Optional[str] = None,
    include_reference: bool = True,
    max_utts: Optional[int] = None,
) -> ScoreRun:
    """Score every hypothesis system (and the references as the ceiling) on the reference utterances."""
    run = ScoreRun(rows=[])
    sc = _Scorers(metrics, whisper, run)
    utts = ref.utts[:max_utts] if max_utts else ref.utts

    ref_wavs: Dict[str, np.ndarray] = {}
    ref_errors: Dict[str, str] = {}
    for u in utts:
        try:
            ref_wavs[u] = load_audio(ref.wavs[u], SAMPLE_RATE)
        except AudioError as e:
            ref_errors[u] = str(e)
    spk = {u: ref.utt2spk.get(u, u) for u in utts}

    # Reference embeddings feed every system's similarity (to the reference, to voice centroids).
    ref_embs: Dict[str, np.ndarray] = {}
    enc = sc.get("sim")
    if enc is not None:
        for u, w in ref_wavs.items():
            ref_embs[u] = sc.timed("sim", enc.embed, w, SAMPLE_RATE)
    from espnet_kalle.scoring.speaker_sim import centroids

    cents = centroids((spk[u], e) for u, e in ref_embs.items())

    if include_reference:
        log.info("scoring %s (%d utterances)", REFERENCE, len(utts))
        for u in utts:
            row = _empty_row(REFERENCE, u)
            row.update(voice=spk[u], ref_speaker=spk[u], ref_text=ref.text.get(u, ""))
            if u in ref_errors:
                row["error"] = ref_errors[u]
                run.rows.append(row)
                continue
            wav = ref_wavs[u]
            row["duration"] = len(wav) / SAMPLE_RATE
            _fill_wer(row, sc, wav, row["ref_text"])
            if u in ref_embs:
                same = [v for v in utts if v != u and spk[v] == spk[u] and v in ref_embs]
                others = [ref_embs[v] for v in same]
                loo = dict(cents)
                if others:
                    loo[spk[u]] = centroids((spk[u], e) for e in others)[spk[u]]
                else:
                    loo.pop(spk[u], None)
                _fill_sim(row, ref_embs[u], ref_embs[same[0]] if same else None, loo, spk[u])
            _fill_dnsmos(row, sc, wav)
            run.rows.append(row)

    for hyp in hyps:
        covered = sum(u in hyp.wavs for u in utts)
        run.coverage[hyp.name] = (covered, len(utts))
        log.info("scoring %s (%d of %d reference utterances)", hyp.name, covered, len(utts))
        for u in utts:
            voice = hyp.utt2spk.get(u, spk[u])
            row = _empty_row(hyp.name, u)
            row.update(voice=voice, ref_speaker=spk[u], ref_text=ref.text.get(u, ""))
            if u not in hyp.wavs:  # a system may cover a subset (e.g. TTT on one speaker): no row, see coverage
                continue
            try:
                wav = load_audio(hyp.wavs[u], SAMPLE_RATE)
            except AudioError as e:
                row["error"] = str(e)
                run.rows.append(row)
                continue
            row["duration"] = len(wav) / SAMPLE_RATE
            t = hyp.timings.get(u)
            if t is not None:  # a 2-column rtf file gives only the ratio: synthesis time follows from the wav
                row["rtf"] = t.rtf
                row["synth_seconds"] = t.seconds if t.audio_seconds is not None else t.rtf * row["duration"]
            _fill_wer(row, sc, wav, row["ref_text"])
            if enc is not None:
                _fill_sim(row, sc.timed("sim", enc.embed, wav, SAMPLE_RATE), ref_embs.get(u), cents, voice)
            if u in ref_wavs and sc.get("mcd") is not None:
                from espnet_kalle.scoring.mcd import mcd_f0

                r = sc.timed("mcd", mcd_f0, ref_wavs[u], wav, SAMPLE_RATE)
                row.update(mcd=r.mcd, log_f0_rmse=r.log_f0_rmse, vuv_error=r.vuv_error)
            _fill_dnsmos(row, sc, wav)
            run.rows.append(row)
    for m, s in run.seconds.items():
        log.info("%s: %.2f s total, %.3f s per call", m, s, s / max(run.calls.get(m, 1), 1))
    return run


def is_number(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(v)
