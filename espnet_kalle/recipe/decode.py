"""Recipe stage 8: decode a test set with a packed model, one output dir per system.

    python -m espnet_kalle.recipe.decode prepare --model_dir exp/lm/packed --data_dir dump/raw/test \
        --prompt_dir dump/raw/dev --out_dir exp/lm/decode_test [--config conf/decode.yaml]
    python -m espnet_kalle.recipe.decode synth  ... --job J --nj N     (the recipe runs JOB=1:N of these)
    python -m espnet_kalle.recipe.decode merge  ... --nj N

Systems (conf/decode.yaml ``systems``):
- ``preset_<name>``: every test sentence with one preset voice of the model;
- ``clone``: every test sentence with its speaker's voice cloned from one reference recording (a dev utterance
  of that speaker when there is one: the prompt then never shares a sentence with the test set);
- ``ttt``: the first test speaker's sentences with a voice adapted by test-time training on that prompt;
- ``resynth``: every test recording through the Flow-VAE alone (encode, decode the posterior mean), the ceiling
  of what the LM can reach with this codec.

``prepare`` makes the voices once (cloning and TTT are not repeated per job) and writes ``plan`` (system, utt,
voice file). ``synth`` writes ``<system>/wav/<utt>.wav`` (kept on re-runs, so a stopped decode resumes).
``merge`` writes ``<system>/wav.scp``, ``<system>/rtf`` (``utt synthesis_seconds audio_seconds`` per line, what
``kalle-score`` reads) and ``systems`` (one name per line) for the scoring stage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from espnet_kalle.kaldi_io import read_kaldi_map, write_kaldi_map

DEFAULT_CONFIG = {
    "systems": {"presets": "all", "clone": True, "ttt": True, "resynth": True},
    "synthesize": {"seed": 0},
    "clone": {"continuation": True},
    "adapt": {"steps": 50, "n_samples": 200, "learning_rate": 1e-4},
}


def load_config(path: Optional[Path]) -> Dict:
    conf = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
    if path is not None:
        for key, value in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
            if key not in conf:
                raise SystemExit(f"decode: unknown section {key!r} in {path} (known: {', '.join(conf)})")
            conf[key].update(value or {})
    return conf


def pick_presets(names: List[str], spec) -> List[str]:
    if spec in (None, False, 0, "none"):
        return []
    if spec == "all" or spec is True:
        return names
    if isinstance(spec, int):
        return names[:spec]
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise SystemExit(f"decode: unknown preset voices {unknown}; the model has {names}")
    return list(spec)


def choose_prompts(data_dir: Path, prompt_dir: Optional[Path], fs: int, min_s: float = 1.0, max_s: float = 30.0):
    """{speaker: (wav path, text, utt id)}: a prompt dir utterance of that speaker if any, else its first test one."""
    test_speakers = set(read_kaldi_map(data_dir / "utt2spk").values())
    sources = []
    if prompt_dir is not None and (prompt_dir / "utt2spk").is_file():
        sources.append(prompt_dir)
    sources.append(data_dir)
    prompts = {}
    for src in sources:
        wavs, texts = read_kaldi_map(src / "wav.scp"), read_kaldi_map(src / "text")
        spk = read_kaldi_map(src / "utt2spk")
        lengths = read_kaldi_map(src / "utt2num_samples") if (src / "utt2num_samples").is_file() else {}
        for utt in sorted(spk):
            s = spk[utt]
            if s in prompts or s not in test_speakers:
                continue
            seconds = int(lengths[utt]) / fs if utt in lengths else None
            if seconds is not None and not min_s <= seconds <= max_s:
                continue
            prompts[s] = (wavs[utt], texts[utt], utt)
    return prompts


def prepare(args, conf) -> None:
    from espnet_kalle.synthesizer import KalleSynthesizer

    synth = KalleSynthesizer.from_pretrained(args.model_dir, device=args.device)
    voices_dir = args.out_dir / "voices"
    voices_dir.mkdir(parents=True, exist_ok=True)
    utt2spk = read_kaldi_map(args.data_dir / "utt2spk")
    utts = sorted(utt2spk)
    plan: List[str] = []
    systems = conf["systems"]

    for name in pick_presets(sorted(synth.voices), systems.get("presets")):
        path = voices_dir / f"preset_{name}.voice.pt"
        synth.voices[name].save(path)
        plan += [f"preset_{name} {utt} {path}" for utt in utts]

    prompts = choose_prompts(args.data_dir, args.prompt_dir, synth.sample_rate)
    prompt_lines = []
    if systems.get("clone"):
        for spk in sorted(set(utt2spk.values())):
            if spk not in prompts:
                print(f"decode: no usable prompt for speaker {spk}: not cloned", file=sys.stderr)
                continue
            wav, text, prompt_utt = prompts[spk]
            path = voices_dir / f"clone_{spk}.voice.pt"
            if not path.is_file():
                synth.clone(wav, text, name=f"clone_{spk}", **conf["clone"]).save(path)
            prompt_lines.append(f"clone {spk} {prompt_utt}")
            plan += [f"clone {utt} {path}" for utt in utts if utt2spk[utt] == spk]
    if systems.get("ttt") and prompts:
        spk = sorted(s for s in set(utt2spk.values()) if s in prompts)[0]
        wav, text, prompt_utt = prompts[spk]
        path = voices_dir / f"ttt_{spk}.voice.pt"
        if not path.is_file():
            start = time.perf_counter()
            voice = synth.adapt(wav, text, name=f"ttt_{spk}", **conf["adapt"])
            voice.save(path)
            print(f"decode: TTT on {prompt_utt} took {time.perf_counter() - start:.1f} s", file=sys.stderr)
        prompt_lines.append(f"ttt {spk} {prompt_utt}")
        plan += [f"ttt {utt} {path}" for utt in utts if utt2spk[utt] == spk]

    if systems.get("resynth"):
        plan += [f"resynth {utt} -" for utt in utts]

    if not plan:
        raise SystemExit("decode: no system to decode (check conf systems and the model's voices)")
    (args.out_dir / "plan").write_text("".join(line + "\n" for line in plan), encoding="utf-8")
    (args.out_dir / "prompts").write_text("".join(line + "\n" for line in prompt_lines), encoding="utf-8")
    names = list(OrderedDict.fromkeys(line.split()[0] for line in plan))
    (args.out_dir / "systems").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    print(f"decode: {len(names)} systems, {len(plan)} utterances to synthesize", file=sys.stderr)


def read_plan(out_dir: Path):
    return [line.split(maxsplit=2) for line in (out_dir / "plan").read_text(encoding="utf-8").splitlines() if line]


def synth(args, conf) -> None:
    import soundfile as sf
    import torch

    from espnet_kalle.audio import save_audio
    from espnet_kalle.synthesizer import KalleSynthesizer
    from espnet_kalle.voice import Voice

    text = read_kaldi_map(args.data_dir / "text")
    recordings = read_kaldi_map(args.data_dir / "wav.scp")
    mine = [row for i, row in enumerate(read_plan(args.out_dir)) if i % args.nj == args.job - 1]
    model = KalleSynthesizer.from_pretrained(args.model_dir, device=args.device)
    voices: Dict[str, Voice] = {}
    times: Dict[str, Dict[str, str]] = {}
    for system, utt, voice_path in mine:
        out = args.out_dir / system / "wav" / f"{utt}.wav"
        times.setdefault(system, {})
        if out.is_file():  # resumed: keep it, report the audio length only
            info = sf.info(str(out))
            times[system][utt] = f"nan {info.frames / info.samplerate:.3f}"
            continue
        if system != "resynth" and voice_path not in voices:
            voices[voice_path] = Voice.load(voice_path)
        start = time.perf_counter()
        with torch.inference_mode():
            if system == "resynth":
                wav = model.resynthesize(recordings[utt])
            else:
                wav = model.synthesize(text[utt], voice=voices[voice_path], **conf["synthesize"])
        elapsed = time.perf_counter() - start
        if wav.size == 0:
            wav = np.zeros(model.hop_length, dtype=np.float32)  # keep the file set complete; scoring flags it
        save_audio(out, wav, model.sample_rate)
        times[system][utt] = f"{elapsed:.3f} {wav.size / model.sample_rate:.3f}"
    for system, rows in times.items():
        split = args.out_dir / system / "split"
        split.mkdir(parents=True, exist_ok=True)
        write_kaldi_map(split / f"utt2time.{args.job}", rows)
    print(f"decode job {args.job}/{args.nj}: {len(mine)} utterances", file=sys.stderr)


def merge(args, conf) -> None:
    plan = read_plan(args.out_dir)
    systems = list(OrderedDict.fromkeys(row[0] for row in plan))
    for system in systems:
        d = args.out_dir / system
        wanted = [utt for s, utt, _ in plan if s == system]
        missing = [u for u in wanted if not (d / "wav" / f"{u}.wav").is_file()]
        if missing:
            raise SystemExit(f"decode: {system}: {len(missing)} wavs missing (e.g. {missing[0]}): did every job run?")
        write_kaldi_map(d / "wav.scp", {u: str((d / "wav" / f"{u}.wav").resolve()) for u in wanted})
        rows: Dict[str, str] = {}
        for part in sorted((d / "split").glob("utt2time.*")):
            rows.update(read_kaldi_map(part))
        # kalle-score's rtf file: "<utt> <synthesis seconds> <audio seconds>" (utterances kept from an
        # interrupted run have no timing and are left out).
        write_kaldi_map(d / "rtf", {u: v for u, v in rows.items() if not v.startswith("nan")})
    (args.out_dir / "systems").write_text("".join(s + "\n" for s in systems), encoding="utf-8")
    print(f"decode: merged {len(systems)} systems in {args.out_dir}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["prepare", "synth", "merge"])
    p.add_argument("--model_dir", type=Path, required=True, help="packed model dir (stage 7)")
    p.add_argument("--data_dir", type=Path, required=True, help="test data dir (wav.scp, text, utt2spk)")
    p.add_argument("--prompt_dir", type=Path, help="data dir to take clone/TTT prompts from (the dev set)")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--config", type=Path, help="decode.yaml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--job", type=int, default=1)
    p.add_argument("--nj", type=int, default=1)
    args = p.parse_args(argv)
    if not 1 <= args.job <= args.nj:
        p.error("need 1 <= --job <= --nj")
    conf = load_config(args.config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    {"prepare": prepare, "synth": synth, "merge": merge}[args.step](args, conf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
