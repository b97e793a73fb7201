"""ESPnet speaker ids for a recipe: ``spk2sid`` from the training set's speakers, ``utt2sid`` for every set.

ESPnet's TTS task reads ``utt2sid`` as its optional ``sids`` input (``--*_data_path_and_name_and_type
utt2sid,sids,text_int``). As in ESPnet's recipes, id 0 stands for a speaker the training set does not have and the
training speakers are numbered from 1 in sorted order. The KALL-E LM uses the ids only to pair each utterance with
another one of its speaker (``speaker_reference: other_utterance``); nothing embeds them.

    python -m espnet_kalle.recipe.speaker_ids --train dump/raw/train --sets dump/raw/train dump/raw/dev
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_kalle.kaldi_io import read_kaldi_map
from espnet_kalle.recipe.kaldi_dir import write_lines

UNKNOWN_SPEAKER = "<unk>"


def read_utt2spk(data_dir: Path) -> Dict[str, str]:
    path = data_dir / "utt2spk"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (a Kaldi data dir needs utt2spk)")
    pairs = read_kaldi_map(path)
    for utt, speaker in pairs.items():
        if not speaker or len(speaker.split()) != 1:
            raise ValueError(f"{path}: expected 'utt_id speaker', got {f'{utt} {speaker}'.strip()!r}")
    if not pairs:
        raise ValueError(f"{path} is empty")
    return pairs


def speaker_to_id(train_dir: Path) -> Dict[str, int]:
    """0 for unknown speakers, then the training speakers from 1 in sorted order."""
    speakers = sorted(set(read_utt2spk(train_dir).values()))
    return {UNKNOWN_SPEAKER: 0, **{s: i for i, s in enumerate(speakers, 1)}}


def write_speaker_ids(train_dir: Path, data_dirs: Sequence[Path]) -> Dict[str, int]:
    """Write ``spk2sid`` into ``train_dir`` and ``utt2sid`` into every data dir; returns the mapping."""
    spk2sid = speaker_to_id(train_dir)
    write_lines(train_dir / "spk2sid", (f"{s} {i}" for s, i in spk2sid.items()))
    for d in data_dirs:
        utt2spk = read_utt2spk(d)
        write_lines(d / "utt2sid", (f"{u} {spk2sid.get(s, 0)}" for u, s in sorted(utt2spk.items())))
    return spk2sid


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, required=True, help="training data dir (its speakers get the ids)")
    p.add_argument("--sets", type=Path, nargs="+", required=True, help="data dirs that get an utt2sid")
    args = p.parse_args(argv)
    try:
        spk2sid = write_speaker_ids(args.train, args.sets)
    except (OSError, ValueError) as e:
        p.error(str(e))
    print(f"speaker ids: {len(spk2sid) - 1} training speakers -> {args.train / 'spk2sid'}; "
          f"utt2sid in {len(args.sets)} data dir(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
