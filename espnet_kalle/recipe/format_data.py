"""Recipe stage 2: a Kaldi data dir -> dump/raw/<set> with 16-bit mono wavs at the codec's rate.

    python -m espnet_kalle.recipe.format_data --src data/train --dst dump/raw/train --fs 16000 --job 1 --nj 4
    python -m espnet_kalle.recipe.format_data --src data/train --dst dump/raw/train --merge 4 \
        [--min_seconds 0.5 --max_seconds 20]

Job mode converts every nj-th utterance of ``wav.scp`` (files in any format libsndfile reads, or ``cmd |`` pipes
as Kaldi data dirs allow) to ``<dst>/data/<utt>.wav`` and writes its piece of the lists under ``<dst>/split/``.
Finished wavs are kept, so an interrupted run resumes. Merge mode joins the pieces, drops utterances outside the
duration range (ESPnet filters training/validation sets only; the recipe passes no range for test sets) and
writes a consistent data dir: wav.scp, text, utt2spk, spk2utt, utt2num_samples (+ ``filtered`` = what was
dropped and why, and the source's ``phone_timings`` of the kept utterances when it has them).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import soundfile as sf

from espnet_kalle.audio import AudioError, resample, save_audio
from espnet_kalle.kaldi_io import read_kaldi_map, read_wav_scp, write_kaldi_map


def read_source(spec: str) -> tuple[np.ndarray, int]:
    """Audio of a wav.scp entry: a path, or a shell command ending in '|' whose stdout is an audio file."""
    spec = spec.strip()
    if spec.endswith("|"):
        proc = subprocess.run(spec[:-1], shell=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise AudioError(spec, f"command failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-300:]}")
        source = io.BytesIO(proc.stdout)
    else:
        if not Path(spec).is_file():
            raise AudioError(spec, "file not found")
        source = spec
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(spec, f"unreadable audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioError(spec, "empty audio")
    return data.mean(axis=1, dtype=np.float32), int(sr)


def num_samples_if_done(path: Path, fs: int) -> Optional[int]:
    """Samples of an already converted wav (resume), None if missing or not what this stage writes."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return None
    if info.samplerate != fs or info.channels != 1 or info.subtype != "PCM_16" or info.frames == 0:
        return None
    return int(info.frames)


def run_job(src: Path, dst: Path, fs: int, job: int, nj: int) -> int:
    wav_scp = read_wav_scp(src / "wav.scp", commands=True)
    (dst / "data").mkdir(parents=True, exist_ok=True)
    (dst / "split").mkdir(parents=True, exist_ok=True)
    scp, lengths, errors = {}, {}, {}
    for index, (utt, spec) in enumerate(wav_scp.items()):
        if index % nj != job - 1:
            continue
        out = (dst / "data" / f"{utt}.wav").resolve()
        n = num_samples_if_done(out, fs)
        if n is None:
            try:
                wav, sr = read_source(spec)
                wav = resample(wav, sr, fs)
                peak = float(np.abs(wav).max())
                if peak > 1.0:  # keep the shape of the waveform rather than clipping it to 16 bits
                    wav = wav / peak * 0.99
                save_audio(out, wav, fs, "PCM_16")
                n = len(wav)
            except AudioError as e:
                errors[utt] = e.reason.replace("\n", " ")
                continue
        scp[utt], lengths[utt] = str(out), str(n)
    write_kaldi_map(dst / "split" / f"wav.scp.{job}", scp)
    write_kaldi_map(dst / "split" / f"utt2num_samples.{job}", lengths)
    write_kaldi_map(dst / "split" / f"errors.{job}", errors)
    print(f"job {job}/{nj}: {len(scp)} utterances converted, {len(errors)} failed", file=sys.stderr)
    return 0


def merge(src: Path, dst: Path, nj: int, min_seconds: float, max_seconds: float, fs: int) -> int:
    scp: Dict[str, str] = {}
    lengths: Dict[str, int] = {}
    dropped: Dict[str, str] = {}
    for job in range(1, nj + 1):
        for name in ("wav.scp", "utt2num_samples", "errors"):
            if not (dst / "split" / f"{name}.{job}").is_file():
                raise SystemExit(f"format_data: {dst}/split/{name}.{job} missing: did job {job} run?")
        scp.update(read_wav_scp(dst / "split" / f"wav.scp.{job}"))
        lengths.update({k: int(v) for k, v in read_kaldi_map(dst / "split" / f"utt2num_samples.{job}").items()})
        dropped.update({k: f"audio error: {v}" for k, v in read_kaldi_map(dst / "split" / f"errors.{job}").items()})
    text = read_kaldi_map(src / "text")
    utt2spk = read_kaldi_map(src / "utt2spk")
    keep: List[str] = []
    for utt in sorted(set(scp) | set(dropped)):
        if utt in dropped:
            continue
        seconds = lengths[utt] / fs
        if utt not in text or not text[utt].strip():
            dropped[utt] = "no text"
        elif utt not in utt2spk:
            dropped[utt] = "no speaker"
        elif min_seconds > 0 and seconds < min_seconds:
            dropped[utt] = f"shorter than {min_seconds} s ({seconds:.2f} s)"
        elif max_seconds > 0 and seconds > max_seconds:
            dropped[utt] = f"longer than {max_seconds} s ({seconds:.2f} s)"
        else:
            keep.append(utt)
    if not keep:
        raise SystemExit(f"format_data: no utterance of {src} is left (see {dst}/filtered)")
    write_kaldi_map(dst / "wav.scp", {u: scp[u] for u in keep})
    write_kaldi_map(dst / "text", {u: text[u] for u in keep})
    write_kaldi_map(dst / "utt2spk", {u: utt2spk[u] for u in keep})
    write_kaldi_map(dst / "utt2num_samples", {u: str(lengths[u]) for u in keep})
    spk2utt: Dict[str, List[str]] = {}
    for u in keep:
        spk2utt.setdefault(utt2spk[u], []).append(u)
    write_kaldi_map(dst / "spk2utt", {s: " ".join(us) for s, us in spk2utt.items()})
    write_kaldi_map(dst / "filtered", dropped)
    if (src / "phone_timings").is_file():  # in seconds: resampling keeps them
        timings = read_kaldi_map(src / "phone_timings")
        write_kaldi_map(dst / "phone_timings", {u: timings[u] for u in keep if u in timings})
    hours = sum(lengths[u] for u in keep) / fs / 3600
    print(f"{dst}: {len(keep)} utterances ({hours:.2f} h) of {len(spk2utt)} speakers; {len(dropped)} dropped "
          f"(see {dst}/filtered)", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="Kaldi data dir (wav.scp, text, utt2spk)")
    p.add_argument("--dst", type=Path, required=True, help="output dir (dump/raw/<set>)")
    p.add_argument("--fs", type=int, default=16000)
    p.add_argument("--job", type=int, help="1-based job index (job mode)")
    p.add_argument("--nj", type=int, default=1, help="number of jobs (job mode)")
    p.add_argument("--merge", type=int, metavar="NJ", help="merge the pieces of NJ jobs (merge mode)")
    p.add_argument("--min_seconds", type=float, default=0.0, help="drop shorter utterances (0: keep all)")
    p.add_argument("--max_seconds", type=float, default=0.0, help="drop longer utterances (0: keep all)")
    args = p.parse_args(argv)
    for name in ("wav.scp", "text", "utt2spk"):
        if not (args.src / name).is_file():
            p.error(f"{args.src}/{name} not found")
    if args.merge is not None:
        return merge(args.src, args.dst, args.merge, args.min_seconds, args.max_seconds, args.fs)
    if args.job is None or not 1 <= args.job <= args.nj:
        p.error("give --job J --nj N (1 <= J <= N) or --merge N")
    return run_job(args.src, args.dst, args.fs, args.job, args.nj)


if __name__ == "__main__":
    sys.exit(main())
