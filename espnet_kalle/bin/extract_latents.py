"""kalle-extract-latents: wav.scp -> one ``(F, 2D)`` float32 npy per utterance of Flow-VAE posterior stats.

The LM is trained on pre-extracted latents (DESIGN.md section 3): row f is ``concat(mu_f, log_sigma_f)`` of the
encoder's posterior at 12.5 Hz, ``F = ceil(T / hop)`` for T samples at the codec's sample rate. With ``--speaker-mel``
each row also carries the raw log-mel frames of the same 80 ms (``hop / 160`` frames x ``--mel-bins``, flattened
frame-major, computed on the audio zero-padded to ``F * hop``), which the LM's speaker encoder reads
(``espnet_kalle.tts.kalle``). The outputs are what ESPnet reads as
``--train_data_path_and_name_and_type <out>/feats.scp,speech,npy`` with ``--odim`` = the row width:

    <out-dir>/data/<utt_id>.npy   the latents (written atomically: a crash never leaves a truncated npy)
    <out-dir>/feats.scp           ``utt_id /abs/path/to/utt_id.npy``
    <out-dir>/feats_shape         ``utt_id F,2D`` (ESPnet's csv_int shape file)
    <out-dir>/latents_info.json   codec facts; a re-run with another codec is refused unless --overwrite
    <out-dir>/errors.txt          ``utt_id<TAB>path<TAB>reason`` per failed utterance and a summary line

Re-running resumes: utterances whose npy exists and loads with the right shape are skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_kalle.atomic import atomic_path, write_text_atomic
from espnet_kalle.audio import AudioError, load_audio
from espnet_kalle.bin.cli import EXIT_INPUT, ArgumentParser, check_device, check_output_dir, run_main
from espnet_kalle.codec.load import load_flow_vae
from espnet_kalle.errors import InputError, ModelInvalid, ModelNotFound
from espnet_kalle.kaldi_io import read_wav_scp

PROG = "kalle-extract-latents"
log = logging.getLogger(PROG)


# ---------------------------------------------------------------------------------------------- codec loading
def find_codec_files(codec_dir: Path, model: Optional[str] = None) -> Tuple[Path, Path]:
    """config.yaml and the model file of an ESPnet codec experiment dir.

    Without ``model``: the only ``*.pth`` apart from ``checkpoint.pth`` (which holds optimizer state), else the
    averaged model (``*ave*.pth``), else ``valid.*best.pth``, else ``latest.pth``.
    """
    config = codec_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{codec_dir}: no config.yaml")
    if model is not None:
        return config, Path(model)
    candidates = sorted(p for p in codec_dir.glob("*.pth") if p.name != "checkpoint.pth")
    if len(candidates) == 1:
        return config, candidates[0]
    for pattern in ("*ave*.pth", "valid.*best.pth", "latest.pth"):
        matches = sorted(codec_dir.glob(pattern))
        if matches:
            return config, matches[0]
    found = ", ".join(p.name for p in candidates) or "none"
    raise FileNotFoundError(f"{codec_dir}: cannot choose a model file (found: {found}); pass --codec-model")


# ------------------------------------------------------------------------------------------------ extraction
@dataclass
class Result:
    utt_id: str
    frames: int = 0
    error: str = ""


def npy_frames(path: Path, width: int) -> Optional[int]:
    """F of a complete latents file of width ``width``, or None if it is missing, truncated or of another shape."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] == 0:
        return None
    return int(arr.shape[0])


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


class Extractor:
    """Loads audio, runs the encoder on padded batches and writes the npy files.

    Padding at the end is exact: the encoder is causal, so frame f of an utterance only sees its own samples up to
    ``f * hop`` and zeros after its end, as in an unbatched pass.
    """

    def __init__(self, codec, device: str, data_dir: Path, mel_bins: int = 0):
        self.codec = codec
        self.device = device
        self.data_dir = data_dir
        self.mel = None
        if mel_bins:
            from espnet_kalle.lm.speaker import LogMelFrontend

            self.mel = LogMelFrontend(sample_rate=codec.sample_rate, n_mels=mel_bins).to(device)
            if codec.hop_length % self.mel.hop:
                raise ValueError(f"codec hop {codec.hop_length} is not a multiple of the log-mel hop {self.mel.hop}")

    def run(self, batch: Sequence[Tuple[str, str]]) -> List[Result]:
        results, loaded = [], []
        for utt_id, path in batch:
            try:
                loaded.append((utt_id, load_audio(path, self.codec.sample_rate)))
            except AudioError as e:
                results.append(Result(utt_id, error=e.reason))
        if loaded:
            results += self._encode_or_report(loaded)
        return results

    def _encode_or_report(self, loaded) -> List[Result]:
        try:
            return self._encode(loaded)
        except RuntimeError as e:
            if len(loaded) == 1:
                return [Result(loaded[0][0], error=f"encoder failed: {e}")]
        # Retry one by one so the failure is pinned on the utterance(s) that cause it.
        return [r for item in loaded for r in self._encode_or_report([item])]

    def _encode(self, loaded) -> List[Result]:
        hop = self.codec.hop_length
        longest = max(len(w) for _, w in loaded)
        wav = torch.zeros(len(loaded), 1, longest)
        for i, (_, w) in enumerate(loaded):
            wav[i, 0, : len(w)] = torch.from_numpy(w)
        n_frames = math.ceil(longest / hop)
        with torch.inference_mode():
            mu, log_sigma = self.codec.encode(wav.to(self.device))
            parts = [mu, log_sigma]
            if self.mel is not None:
                parts.append(self._logmel(wav, n_frames))
            stats = torch.cat(parts, dim=1).transpose(1, 2).float().cpu().numpy()  # [B, F, width]
        if mu.shape[-1] != n_frames:
            raise RuntimeError(f"encoder gave {mu.shape[-1]} frames for {longest} samples, not ceil(T / {hop})")
        out = []
        for i, (utt_id, w) in enumerate(loaded):
            frames = math.ceil(len(w) / hop)
            save_npy_atomic(self.data_dir / f"{utt_id}.npy", np.ascontiguousarray(stats[i, :frames]))
            out.append(Result(utt_id, frames=frames))
        return out

    def _logmel(self, wav: torch.Tensor, n_frames: int) -> torch.Tensor:
        """[B, 1, T] zero-padded -> raw log-mel regrouped per latent frame, [B, k * n_mels, n_frames]."""
        hop = self.codec.hop_length
        k = hop // self.mel.hop
        padded = torch.nn.functional.pad(wav[:, 0], (0, n_frames * hop - wav.shape[-1])).to(self.device)
        logmel, _ = self.mel(padded, normalize=False)  # [B, n_mels, 1 + n_frames * k]
        logmel = logmel[..., : n_frames * k].transpose(1, 2)  # [B, n_frames * k, n_mels]
        return logmel.reshape(wav.shape[0], n_frames, k * self.mel.n_mels).transpose(1, 2)


_worker: Optional[Extractor] = None


def _init_worker(config: str, model: str, device: str, data_dir: str, mel_bins: int, threads: int) -> None:
    global _worker
    torch.set_num_threads(threads)
    _worker = Extractor(load_flow_vae(config, model, device), device, Path(data_dir), mel_bins)


def _run_in_worker(batch):
    return _worker.run(batch)


# ------------------------------------------------------------------------------------------------------- CLI
def get_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Extract Flow-VAE posterior latents concat(mu, log_sigma) [F, 2D] as npy for LM training.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--codec-config", type=Path, help="config.yaml of the codec experiment")
    p.add_argument("--codec-model", type=Path, help="model file (.pth) of the codec experiment")
    p.add_argument("--codec-dir", type=Path, help="codec experiment dir (config.yaml + *.pth), instead of the above")
    p.add_argument("--wav-scp", type=Path, required=True, help="Kaldi-style wav.scp: 'utt_id path' per line")
    p.add_argument("--out-dir", type=Path, required=True, help="where data/, feats.scp, feats_shape ... go")
    p.add_argument("--device", default="cpu", help="torch device of the encoder (cpu, cuda, cuda:1)")
    p.add_argument("--batch-size", type=int, default=1, help="utterances per encoder call")
    p.add_argument("--nj", type=int, default=1, help="parallel worker processes (each loads the codec)")
    p.add_argument("--speaker-mel", action="store_true", help="append the raw log-mel of each 80 ms to each row")
    p.add_argument("--mel-bins", type=int, default=80, help="log-mel bins for --speaker-mel")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if some utterances failed")
    p.add_argument("--overwrite", action="store_true", help="re-extract everything (also with a different codec)")
    return p


def _resolve_codec(args: argparse.Namespace) -> Tuple[Path, Path]:
    """The codec's config and model file; a missing one is a missing model (``ModelNotFound``)."""
    if args.codec_dir is not None:
        if args.codec_config is not None:
            raise InputError("give --codec-dir or --codec-config, not both")
        try:
            config, model = find_codec_files(args.codec_dir, args.codec_model)
        except FileNotFoundError as e:
            raise ModelNotFound(str(e)) from e
    elif args.codec_config is None or args.codec_model is None:
        raise InputError("give --codec-config and --codec-model, or --codec-dir")
    else:
        config, model = args.codec_config, args.codec_model
    for f in (config, model):
        if not f.is_file():
            raise ModelNotFound(f"{f}: no such file")
    return config, model


def _write_atomic(path: Path, lines: Sequence[str]) -> None:
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def _check_info(info_path: Path, info: Dict, overwrite: bool) -> None:
    if info_path.is_file() and not overwrite:
        old = json.loads(info_path.read_text(encoding="utf-8"))
        if old != info:
            diff = {k: (old.get(k), v) for k, v in info.items() if old.get(k) != v}
            raise InputError(
                f"{info_path.parent} holds latents of another codec ({diff}); "
                "pass --overwrite to replace them or choose another --out-dir"
            )
    _write_atomic(info_path, [json.dumps(info, indent=1, sort_keys=True)])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit codes: 0 ok, 2 bad input (options, wav.scp, output dir, or audio that failed: see errors.txt),
    3 codec missing or unreadable (``espnet_kalle.bin.cli``)."""
    return run_main(PROG, lambda: _run(argv), model="the codec")


def _run(argv: Optional[Sequence[str]]) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.batch_size < 1 or args.nj < 1:
        raise InputError("--batch-size and --nj must be >= 1")
    check_device(args.device)
    check_output_dir(args.out_dir, "--out-dir")
    try:
        entries = list(read_wav_scp(args.wav_scp).items())
    except OSError as e:
        raise InputError(f"--wav-scp {args.wav_scp}: {e.strerror or e}") from e
    except ValueError as e:
        raise InputError(str(e)) from e
    if not entries:
        raise InputError(f"{args.wav_scp}: no utterances")
    config, model = _resolve_codec(args)

    try:
        codec = load_flow_vae(config, model, args.device)
    except (OSError, ValueError) as e:
        raise ModelInvalid(str(e)) from e
    out_dir = args.out_dir.resolve()
    data_dir = out_dir / "data"
    mel_bins = args.mel_bins if args.speaker_mel else 0
    try:
        extractor = Extractor(codec, args.device, data_dir, mel_bins)
    except ValueError as e:
        raise InputError(str(e)) from e
    mel_per_frame = codec.hop_length // extractor.mel.hop if extractor.mel is not None else 0
    width = 2 * codec.latent_dim + mel_per_frame * mel_bins
    data_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "codec_config": str(config.resolve()),
        "codec_model": str(model.resolve()),
        "feature": "concat(mu, log_sigma" + (", log-mel)" if mel_bins else ")") + " over the last axis",
        "mel_bins": mel_bins,
        "mel_per_frame": mel_per_frame,
        "latent_dim": codec.latent_dim,
        "dim": width,
        "hop_length": codec.hop_length,
        "sample_rate": codec.sample_rate,
    }
    _check_info(out_dir / "latents_info.json", info, args.overwrite)

    results: Dict[str, Result] = {}
    todo: List[Tuple[str, str]] = []
    for utt_id, path in entries:
        if "/" in utt_id or utt_id.startswith("."):
            results[utt_id] = Result(utt_id, error="utterance id is not a valid file name (has '/' or starts with '.')")
            continue
        frames = None if args.overwrite else npy_frames(data_dir / f"{utt_id}.npy", width)
        if frames is None:
            todo.append((utt_id, path))
        else:
            results[utt_id] = Result(utt_id, frames=frames)
    skipped = len(results) - sum(bool(r.error) for r in results.values())

    from tqdm import tqdm

    batches = [todo[i : i + args.batch_size] for i in range(0, len(todo), args.batch_size)]
    with tqdm(total=len(todo), desc="latents", unit="utt", file=sys.stderr) as bar:
        if args.nj == 1 or len(batches) <= 1:
            outputs = map(extractor.run, batches)
            pool = None
        else:
            import multiprocessing as mp

            del codec, extractor  # each worker loads its own
            threads = max(1, (os.cpu_count() or 1) // args.nj)
            pool = mp.get_context("spawn").Pool(
                args.nj, _init_worker, (str(config), str(model), args.device, str(data_dir), mel_bins, threads)
            )
            outputs = pool.imap_unordered(_run_in_worker, batches)
        try:
            for batch_results in outputs:
                for r in batch_results:
                    results[r.utt_id] = r
                bar.update(len(batch_results))
        finally:
            if pool is not None:
                pool.close()
                pool.join()

    scp, shapes, errors = [], [], []
    for utt_id, path in entries:
        r = results[utt_id]
        if r.error:
            errors.append(f"{utt_id}\t{path}\t{r.error}")
        else:
            scp.append(f"{utt_id} {data_dir / (utt_id + '.npy')}")
            shapes.append(f"{utt_id} {r.frames},{width}")
    _write_atomic(out_dir / "feats.scp", scp)
    _write_atomic(out_dir / "feats_shape", shapes)
    errors_path = out_dir / "errors.txt"
    summary = (
        f"{len(entries)} utterances: {len(scp) - skipped} extracted, {skipped} already done, {len(errors)} failed"
    )
    if errors:
        _write_atomic(errors_path, errors + [f"# {summary}"])
        summary += f" (see {errors_path})"
    else:
        errors_path.unlink(missing_ok=True)
    log.info(summary)
    if errors and not args.allow_errors:
        return EXIT_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
