"""Write and check Kaldi-style data dirs, the one interface between data prep and the rest of the recipe.

ESPnet (like Kaldi) requires every file sorted by utterance id in byte order and utterance ids that start with
their speaker id, so that sorting by utterance also sorts by speaker. We enforce that here once instead of
trusting every corpus script to get it right.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from espnet_kalle.atomic import write_text_atomic
from espnet_kalle.kaldi_io import read_kaldi_map, read_wav_scp

FILES = ("wav.scp", "text", "utt2spk", "spk2utt")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Utterance:
    """One line of each data-dir file: id, speaker, audio path and transcript."""

    utt_id: str
    speaker: str
    wav: str
    text: str


def check_utterance(utt: Utterance) -> None:
    """Reject ids and texts that would corrupt a whitespace-separated Kaldi file or break its sort order."""
    for name, value in (("utterance id", utt.utt_id), ("speaker id", utt.speaker)):
        if not _ID.match(value):
            raise ValueError(f"bad {name} {value!r}: use letters, digits, '_', '.', '-'")
    if not utt.utt_id.startswith(utt.speaker):
        raise ValueError(f"utterance id {utt.utt_id!r} must start with its speaker id {utt.speaker!r}")
    if any(c.isspace() for c in utt.wav):
        raise ValueError(f"wav path with whitespace is not allowed in wav.scp: {utt.wav!r}")
    if not utt.text.strip() or "\n" in utt.text:
        raise ValueError(f"{utt.utt_id}: text must be one non-empty line")


def write_data_dir(out_dir: str | Path, utterances: Iterable[Utterance]) -> Path:
    """Write wav.scp, text, utt2spk and spk2utt sorted by id (byte order); return the dir."""
    utts = sorted(utterances, key=lambda u: u.utt_id)
    if not utts:
        raise ValueError(f"no utterances for {out_dir}")
    seen: set[str] = set()
    for utt in utts:
        check_utterance(utt)
        if utt.utt_id in seen:
            raise ValueError(f"duplicate utterance id {utt.utt_id}")
        seen.add(utt.utt_id)
    check_speaker_order([(u.utt_id, u.speaker) for u in utts], str(out_dir))
    spk2utt: dict[str, list[str]] = defaultdict(list)
    for utt in utts:
        spk2utt[utt.speaker].append(utt.utt_id)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_lines(out / "wav.scp", (f"{u.utt_id} {u.wav}" for u in utts))
    write_lines(out / "text", (f"{u.utt_id} {' '.join(u.text.split())}" for u in utts))
    write_lines(out / "utt2spk", (f"{u.utt_id} {u.speaker}" for u in utts))
    write_lines(out / "spk2utt", (f"{s} {' '.join(spk2utt[s])}" for s in sorted(spk2utt)))
    return out


def read_data_dir(data_dir: str | Path) -> list[Utterance]:
    """Read a data dir back (for tests and later stages); raises if the four files disagree."""
    validate_data_dir(data_dir)
    d = Path(data_dir)
    wavs = read_wav_scp(d / "wav.scp")
    texts = read_kaldi_map(d / "text")
    spks = read_kaldi_map(d / "utt2spk")
    return [Utterance(u, spks[u], wavs[u], texts[u]) for u in wavs]


def validate_data_dir(data_dir: str | Path) -> None:
    """Check what ESPnet's stages assume: files present, sorted, same ids, spk2utt = inverse of utt2spk."""
    d = Path(data_dir)
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise ValueError(f"{d}: missing {', '.join(missing)}")
    ids = {}
    for name in ("wav.scp", "text", "utt2spk"):
        keys = [line.split(maxsplit=1)[0] for line in _lines(d / name)]
        if keys != sorted(keys):
            raise ValueError(f"{d / name} is not sorted by utterance id (LC_ALL=C order)")
        if len(set(keys)) != len(keys):
            raise ValueError(f"{d / name} has duplicate ids")
        ids[name] = keys
    if not (ids["wav.scp"] == ids["text"] == ids["utt2spk"]):
        raise ValueError(f"{d}: wav.scp, text and utt2spk list different utterances")
    utt2spk = read_kaldi_map(d / "utt2spk")
    spk2utt = {line.split()[0]: line.split()[1:] for line in _lines(d / "spk2utt")}
    if list(spk2utt) != sorted(spk2utt):
        raise ValueError(f"{d / 'spk2utt'} is not sorted by speaker id")
    inverse: dict[str, list[str]] = defaultdict(list)
    for utt, spk in utt2spk.items():
        inverse[spk].append(utt)
    if dict(inverse) != spk2utt:
        raise ValueError(f"{d}: spk2utt is not the inverse of utt2spk")
    for utt, spk in utt2spk.items():
        if not utt.startswith(spk):
            raise ValueError(f"{d}: utterance id {utt} does not start with its speaker id {spk}")
    check_speaker_order(list(utt2spk.items()), str(d))


def check_speaker_order(utt_spk: list[tuple[str, str]], where: str) -> None:
    """Sorted by utterance id, the speakers must come out sorted too (Kaldi's rule).

    A prefix alone is not enough: with speakers "19" and "190", "190_x" sorts before "19_x". Joining the
    speaker id and the rest with "-", which sorts before every other id character, always satisfies it.
    """
    spks = [spk for _, spk in sorted(utt_spk)]
    if spks != sorted(spks):
        raise ValueError(f"{where}: sorting by utterance id does not sort by speaker; join speaker and rest with '-'")


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """One line per item, in the given order, replaced atomically."""
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
