"""The Python side of the recipe ``egs/kalle/tts1``: one module per stage job, each runnable with ``python -m``.

Data preparation (stage 1, called by ``local/data.sh``) lives in ``sentences``, ``voices``, ``mini_corpus``,
``corpora`` and ``kaldi_dir``: plain Python plus command-line tools (flite, sox, espeak-ng), no torch or ESPnet
import, so it stays fast and testable on its own. Every stage reads and writes Kaldi-style data dirs
(``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``).
"""
