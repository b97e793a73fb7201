"""Training items that continue another utterance of the same speaker, as prompted generation does.

A voice with a prompt (every mini-en preset, every clone) generates ``[speaker][prompt text + text][SEP][prompt
latents]`` and goes on from there. An LM trained on single utterances never saw one sentence follow another: it
has to restart speech after a finished sentence, which costs most of its free-running intelligibility (mini-en
RESULTS.md, free-running probe). Joining pairs of utterances of one speaker in the batch, text to text and frames to
frames, trains exactly that transition; the frames of both halves stay targets, so no data is lost.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch.nn.utils.rnn import pad_sequence


def continuation_pairs(groups: Optional[torch.Tensor], batch_size: int, share: float,
                       generator: Optional[torch.Generator] = None) -> List[Tuple[int, int]]:
    """Disjoint (first, second) item pairs of one group each (``groups`` [B] speaker ids; None = one speaker),
    about ``share`` of the ``batch_size`` items in pairs (a fractional pair count is rounded at random)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"continuation_share must be in [0, 1], got {share}")
    wanted = share * batch_size / 2
    n_pairs = int(wanted) + int(torch.rand((), generator=generator) < wanted - int(wanted))
    if n_pairs == 0:
        return []
    order = torch.randperm(batch_size, generator=generator).tolist()
    labels = [0] * batch_size if groups is None else groups.reshape(-1).tolist()
    waiting: dict = {}
    pairs: List[Tuple[int, int]] = []
    for item in order:
        partner = waiting.pop(labels[item], None)
        if partner is None:
            waiting[labels[item]] = item
            continue
        pairs.append((partner, item))
        if len(pairs) == n_pairs:
            break
    return pairs


def pair_groups(pairs: List[Tuple[int, int]], batch_size: int) -> List[List[int]]:
    """The items of the joined batch: each pair, then the unpaired items, as lists of old batch indices."""
    paired = {i for pair in pairs for i in pair}
    return [list(pair) for pair in pairs] + [[i] for i in range(batch_size) if i not in paired]


def join_rows(x: torch.Tensor, lengths: torch.Tensor, groups: List[List[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each group's valid rows of ``x`` [B, L, ...] one after another, padded: the joined batch and its lengths."""
    rows = [torch.cat([x[i, : int(lengths[i])] for i in group]) for group in groups]
    joined_lengths = torch.tensor([r.shape[0] for r in rows], dtype=lengths.dtype, device=lengths.device)
    return pad_sequence(rows, batch_first=True), joined_lengths


def join_continuations(text: torch.Tensor, text_lengths: torch.Tensor, feats: torch.Tensor,
                       feats_lengths: torch.Tensor, pairs: List[Tuple[int, int]]
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, List[int]]:
    """The batch with each pair joined into one item (first's text then second's, first's frames then second's;
    every feature column, speaker log-mel included, follows its frame), then the unpaired items. Also returns,
    per new item, the batch index whose speaker it has (the second of a pair)."""
    if not pairs:
        return text, text_lengths, feats, feats_lengths, list(range(text.shape[0]))
    groups = pair_groups(pairs, text.shape[0])
    new_text, new_text_lengths = join_rows(text, text_lengths, groups)
    new_feats, new_feats_lengths = join_rows(feats, feats_lengths, groups)
    return new_text, new_text_lengths, new_feats, new_feats_lengths, [group[-1] for group in groups]
