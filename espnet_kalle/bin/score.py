"""kalle-score: offline scores of synthesized speech against a Kaldi-style reference set.

    kalle-score --ref-dir data/test --hyp-dir exp/kalle/decode/preset --hyp-dir exp/kalle/decode/clone \
        [--system preset --system clone] [--latents dump/latents/test/feats.scp] [--train-log-dir exp/kalle] \
        --out exp/kalle/scoring

Writes ``scores.tsv`` (one row per system x utterance), ``summary.json``, ``RESULTS.md`` and ``plots/*.png``.
The references are scored too, as the "reference" ceiling. Scorers whose package is missing are reported as
"not available (pip install espnet-kalle[score])"; nothing is ever downloaded (a Whisper scorer needs
``--whisper`` pointing at local weights).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_kalle.bin.cli import ArgumentParser, check_output_dir, run_main
from espnet_kalle.errors import InputError, KalleError, ModelNotFound
from espnet_kalle.scoring.data import load_hyp_dir, load_ref_dir
from espnet_kalle.scoring.report import write_report
from espnet_kalle.scoring.runner import METRICS, score_systems

PROG = "kalle-score"


def get_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref-dir", required=True, help="data dir with wav.scp, text, utt2spk")
    p.add_argument("--hyp-dir", action="append", default=[],
                   help="a system's output: wav.scp, wav/<utt>.wav or <utt>.wav; optional utt2spk and rtf "
                        "(repeat for several systems)")
    p.add_argument("--system", action="append", default=[],
                   help="name of each --hyp-dir in the same order (default: the dir's name)")
    p.add_argument("--out", required=True, type=Path,
                   help="output dir (scores.tsv, summary.json, RESULTS.md, plots/)")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma list from {','.join(METRICS)}")
    p.add_argument("--whisper", default=None,
                   help="local Whisper weights (HF dir, CTranslate2 dir or .pt) used instead of pocketsphinx")
    p.add_argument("--latents", action="append", default=[], help="feats.scp of mu|log_sigma npy latents")
    p.add_argument("--train-log-dir", action="append", default=[], help="ESPnet exp dir with train.log")
    p.add_argument("--no-reference", action="store_true", help="do not score the references as a system")
    p.add_argument("--max-utts", type=int, default=None, help="score only the first N reference utterances")
    p.add_argument("--title", default=None, help="section title in RESULTS.md (default: the --out dir)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Exit codes: 0 ok, 2 bad input (dirs, options, output dir), 3 the --whisper model missing or unreadable."""
    return run_main(PROG, lambda: _run(argv), model="the ASR model")


def _run(argv: Optional[List[str]]) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.system and len(args.system) != len(args.hyp_dir):
        raise InputError(f"{len(args.system)} --system names for {len(args.hyp_dir)} --hyp-dir")
    # Inputs read only by the report, after minutes of scoring: check them first.
    missing = [f"--latents {p}" for p in args.latents if not Path(p).is_file()]
    missing += [f"--train-log-dir {d}" for d in args.train_log_dir if not Path(d).is_dir()]
    if missing:
        raise InputError(f"not found: {', '.join(missing)}")
    check_output_dir(args.out)
    if args.whisper is not None and not Path(args.whisper).exists():
        raise ModelNotFound(f"--whisper {args.whisper}: no such Whisper model (weights are never downloaded)")
    names = args.system or [None] * len(args.hyp_dir)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    try:
        ref = load_ref_dir(args.ref_dir)
        hyps = [load_hyp_dir(d, n) for d, n in zip(args.hyp_dir, names)]
        if len({h.name for h in hyps}) != len(hyps):
            raise InputError("two systems have the same name; pass --system for each --hyp-dir")
        run = score_systems(ref, hyps, metrics, whisper=args.whisper, include_reference=not args.no_reference,
                            max_utts=args.max_utts)
        written = write_report(args.out, run, args.title or str(args.out), args.latents, args.train_log_dir)
    except KalleError:
        raise
    except (FileNotFoundError, ValueError) as e:  # the scorers' own checks of the data dirs and options
        raise InputError(str(e)) from e
    for m, reason in run.unavailable.items():
        print(f"{PROG}: {m}: {reason}", file=sys.stderr)
    print(f"{PROG}: wrote {written['results']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
