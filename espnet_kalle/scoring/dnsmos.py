"""DNSMOS (P.835 SIG/BAK/OVRL and P.808) from the onnx models inside the ``speechmos`` wheel.

A non-intrusive MOS proxy: it catches noise and artefacts well but does not rank naturalness of clean voices,
so the report uses it as a noise check next to the intrusive metrics.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from espnet_kalle.audio import resample
from espnet_kalle.scoring.deps import require, version

DNSMOS_SAMPLE_RATE = 16000
FIELDS = ("ovrl", "sig", "bak", "p808")


class DNSMOS:
    """``score(wav, sr)`` -> {"ovrl", "sig", "bak", "p808"} (1..5 scale); models load once on first use."""

    def __init__(self) -> None:
        require("onnxruntime")
        require("librosa")
        self._dnsmos = require("speechmos.dnsmos", "speechmos")
        self.name = f"speechmos {version('speechmos')} DNSMOS (onnxruntime {version('onnxruntime')})"

    def score(self, wav: np.ndarray, sample_rate: int) -> Dict[str, float]:
        x = resample(np.asarray(wav, dtype=np.float32), sample_rate, DNSMOS_SAMPLE_RATE)
        x = np.clip(x, -1.0, 1.0)  # speechmos refuses samples outside [-1, 1]
        out = self._dnsmos.run(x, DNSMOS_SAMPLE_RATE)
        return {f: float(out[f"{f}_mos"]) for f in FIELDS}
