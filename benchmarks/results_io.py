"""Where a benchmark's results go: ``<out>/<benchmark>_<hardware>_<YYYYMMDD><suffix>.json`` (the naming every
file in ``results/`` follows), written as indented JSON."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any


def write_result(out: str | Path, benchmark: str, hardware: str, result: dict[str, Any], suffix: str = "",
                 quiet: bool = False) -> Path:
    """Write ``result`` under folder ``out`` (made if missing) and return the file's path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{benchmark}_{hardware}_{date.today():%Y%m%d}{suffix}.json"
    path.write_text(json.dumps(result, indent=1))
    if not quiet:
        print("wrote", path)
    return path
