"""Pack a trained LM + Flow-VAE into a self-contained model dir that ``KalleSynthesizer`` loads.

    python -m espnet_kalle.pretrained.pack --lm-config exp/kalle/config.yaml --lm-model exp/kalle/valid.loss.best.pth \
        --codec-config exp/flowvae/config.yaml --codec-model exp/flowvae/latest.pth --out exp/packed/mini-en \
        [--voices 6] [--voice-candidates 48] [--name mini-en] [--lang en] [--half] [--int8-lm]

Layout: model.yaml (name, lang, parts), lm/{config.yaml,model.pth}, codec/{config.yaml,model.pth}, voices/*.voice.pt.
Preset voices are speaker latents drawn from N(0, I) by seed, each continuing a prompt the model speaks itself,
picked and named by pitch (``espnet_kalle.pretrained.presets``). Weights may be stored as float16 (``--half``)
to halve the size; they load back as float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import yaml

from espnet_kalle.atomic import write_text_atomic
from espnet_kalle.checkpoint import load_state_dict, save_atomic
from espnet_kalle.languages import DEFAULT_LANG, check_lang
from espnet_kalle.pretrained import FORMAT
from espnet_kalle.pretrained.presets import CANDIDATES_PER_VOICE, write_presets
from espnet_kalle.tts.load import read_train_config

LM_CONFIG, LM_MODEL = "lm/config.yaml", "lm/model.pth"
CODEC_CONFIG, CODEC_MODEL = "codec/config.yaml", "codec/model.pth"


def _half(state: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v.half() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()}


def write_model_dir(out: Path, lm_config: Dict[str, Any], lm_state: Dict[str, Any], codec_config: Dict[str, Any],
                    codec_state: Dict[str, Any], name: Optional[str] = None, half: bool = False,
                    extra_meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write the model-dir layout (model.yaml, lm/, codec/) from in-memory configs and state dicts.

    Shared by ``pack`` (trained ESPnet experiments) and ``kalle-convert-official`` (released weights), so both
    produce what ``KalleSynthesizer.from_pretrained`` reads. Returns the model.yaml content.
    """
    out.mkdir(parents=True, exist_ok=True)
    lm_config = dict(lm_config)
    lm_config["tts_conf"] = dict(lm_config.get("tts_conf") or {})
    lm_config["tts_conf"]["codec_config"] = CODEC_CONFIG  # relative to the model dir
    lm_config["tts_conf"]["codec_file"] = CODEC_MODEL
    (out / "lm").mkdir(exist_ok=True)
    (out / "codec").mkdir(exist_ok=True)
    (out / LM_CONFIG).write_text(yaml.safe_dump(lm_config, sort_keys=False), encoding="utf-8")
    save_atomic(_half(lm_state) if half else lm_state, out / LM_MODEL)
    (out / CODEC_CONFIG).write_text(yaml.safe_dump(codec_config, sort_keys=False), encoding="utf-8")
    save_atomic(_half(codec_state) if half else codec_state, out / CODEC_MODEL)
    meta = {
        "format": FORMAT,
        "name": name or out.name,
        "lm_config": LM_CONFIG,
        "lm_model": LM_MODEL,
        "codec_config": CODEC_CONFIG,
        "codec_model": CODEC_MODEL,
        "voices_dir": "voices",
        **(extra_meta or {}),
    }
    write_text_atomic(out / "model.yaml", yaml.safe_dump(meta, sort_keys=False))  # last: the dir is complete
    (out / "voices").mkdir(exist_ok=True)
    return meta


def pack(lm_config: Path, lm_model: Path, codec_config: Path, codec_model: Path, out: Path,
         n_voices: int = 6, name: Optional[str] = None, half: bool = False, int8_lm: bool = False,
         n_candidates: Optional[int] = None, lang: str = DEFAULT_LANG) -> Path:
    """``int8_lm`` marks the dir so the synthesizer generates with an int8 backbone by default (weights stay float).
    ``n_candidates``: seeds auditioned for the ``n_voices`` presets (``presets.make_presets``). ``lang``: the
    language of the training data, recorded in model.yaml for the integrations to advertise."""
    meta: Dict[str, Any] = {"lang": check_lang(lang)}  # checked before any work
    if int8_lm:
        meta["int8_lm"] = True
    config = read_train_config(lm_config)  # token_list inline, so the dir does not depend on the recipe's files
    codec_conf = yaml.safe_load(Path(codec_config).read_text(encoding="utf-8"))
    write_model_dir(out, config, load_state_dict(lm_model, "LM model file"), codec_conf,
                    load_state_dict(codec_model, "codec model file"), name, half, meta)

    from espnet_kalle.synthesizer import KalleSynthesizer

    synth = KalleSynthesizer.from_pretrained(out)
    write_presets(out, synth, n_voices if synth.model.speaker is not None else 0, n_candidates)
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-config", type=Path, required=True)
    parser.add_argument("--lm-model", type=Path, required=True)
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--voices", type=int, default=6, help="number of preset voices to draw and name")
    parser.add_argument("--voice-candidates", type=int, default=None,
                        help=f"seeds to audition for the presets (default {CANDIDATES_PER_VOICE} per voice)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--lang", default=DEFAULT_LANG, help="language code of the training data (en, en_US, de, ...)")
    parser.add_argument("--half", action="store_true", help="store weights as float16")
    parser.add_argument("--int8-lm", action="store_true", help="generate with int8 LM weights by default (CPU)")
    args = parser.parse_args(argv)
    out = pack(args.lm_config, args.lm_model, args.codec_config, args.codec_model, args.out, args.voices,
               args.name, args.half, args.int8_lm, args.voice_candidates, args.lang)
    print(f"packed model dir: {out}")


if __name__ == "__main__":
    main()
