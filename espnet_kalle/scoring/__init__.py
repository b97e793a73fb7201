"""Offline scoring of synthesized speech: one metric per module.

Every scorer carries its weights inside a package (nothing downloads), imports its package lazily, and raises
``ScorerUnavailable`` when the package is missing, so the report can say "not available" instead of crashing:

- ``asr_wer``      intelligibility: pocketsphinx en-us (or a local Whisper) + jiwer WER
- ``speaker_sim``  resemblyzer embedding cosine to the reference and to each voice's centroid
- ``mcd``          MCD-DTW on WORLD mel-cepstra, log-F0 RMSE, V/UV error (pyworld)
- ``dnsmos``       DNSMOS P.835 / P.808 (speechmos, onnxruntime)
- ``rtf``          timing helpers and the per-utterance ``rtf`` file
- ``data``         reading the reference dir and each system's decode dir
- ``runner``       scoring every system (and the references, as the ceiling) into per-utterance rows
- ``report``       aggregation per system / voice, scores.tsv, summary.json, RESULTS.md
- ``plots``        PNG figures; ``train_log`` (ESPnet log curves) and ``latents`` (Flow-VAE posteriors) feed them
"""

from espnet_kalle.scoring.deps import INSTALL_HINT, ScorerUnavailable

__all__ = ["INSTALL_HINT", "ScorerUnavailable"]
