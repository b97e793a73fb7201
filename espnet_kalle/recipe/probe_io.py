"""What every probe of the recipe does at its edges: check the Kaldi dir it reads, print and keep its numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence


def missing_data_file(data_dir: Path, names: Sequence[str] = ("text", "wav.scp")) -> Optional[Path]:
    """The first of ``names`` that ``data_dir`` lacks (None when it has them all)."""
    return next((data_dir / name for name in names if not (data_dir / name).is_file()), None)


def emit(report: str, result: Mapping[str, Any], out: Optional[Path]) -> None:
    """Print the markdown ``report``; with ``out``, also write ``result`` there as JSON (parents created)."""
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
