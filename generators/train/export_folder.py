"""Pack a finished run for the trip home: ``export/`` (weights cast to bf16), ``eval.json``, the TensorBoard
events and the last checkpoint's ``config.json``, in one tar (small enough for a device machine's $OUT).

    python -m sana_world.generators.train.export_folder RUN_DIR OUT.tar [--fp32]
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import torch


def _bf16_bytes(path: Path) -> bytes:
    """A safetensors file with every floating tensor cast to bf16 (metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cast = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    return save(cast, metadata=meta)


def export_checkpoint(run: Path, raw: bool = False) -> Path:
    """``run/export`` from the run's latest checkpoint: the EMA weights (``model.safetensors``; the raw
    weights if the run kept no EMA) and ``config.json`` (the model's ``_class_name`` and config plus the
    training config under ``training``)."""
    import shutil

    ckpts = sorted((run / "checkpoints").glob("step-*"))
    if not ckpts:
        raise FileNotFoundError(f"{run} has neither export/ nor checkpoints/step-*")
    last = ckpts[-1]
    config = json.loads((last / "config.json").read_text())
    export = run / "export"
    export.mkdir()
    use_ema = (last / "ema.safetensors").is_file() and not raw
    weights = last / ("ema.safetensors" if use_ema else "model.safetensors")
    shutil.copyfile(weights, export / "model.safetensors")
    step = json.loads((last / "trainer_state.json").read_text())["step"]
    out = {"_class_name": config["_class_name"], "config": config["model"], "step": step, "ema": use_ema,
           "training": config}
    (export / "config.json").write_text(json.dumps(out, indent=2, sort_keys=True))
    return export


def pack_run(run_dir: str | Path, tar_path: str | Path, bf16: bool = True, raw: bool = False) -> Path:
    """Write ``tar_path`` from ``run_dir`` (module doc); raises if the run has no ``export/``."""
    run, tar_path = Path(run_dir), Path(tar_path)
    export = run / "export"
    if raw:
        if export.is_dir():
            import shutil

            shutil.rmtree(export)
        export_checkpoint(run, raw=True)
    elif not export.is_dir():
        export_checkpoint(run)
    with tarfile.open(tar_path, "w") as tar:
        # 1. the export folder, weights optionally in bf16
        for f in sorted(export.rglob("*")):
            if not f.is_file():
                continue
            arc = f"export/{f.relative_to(export)}"
            if bf16 and f.suffix == ".safetensors":
                data = _bf16_bytes(f)
                info = tarfile.TarInfo(arc)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.add(f, arcname=arc)
        # 2. eval report, TensorBoard events, the run config
        for f in [run / "eval.json", *sorted((run / "tb").rglob("*"))]:
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(run)))
        ckpts = sorted((run / "checkpoints").glob("step-*"))
        if ckpts and (ckpts[-1] / "config.json").is_file():
            tar.add(ckpts[-1] / "config.json", arcname="train_config.json")
    return tar_path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("tar")
    p.add_argument("--fp32", action="store_true", help="keep the weights' own dtype")
    p.add_argument("--raw", action="store_true", help="export the raw (non-EMA) weights of the last checkpoint")
    a = p.parse_args(argv)
    out = pack_run(a.run_dir, a.tar, bf16=not a.fp32, raw=a.raw)
    print(json.dumps({"tar": str(out), "bytes": out.stat().st_size}))


if __name__ == "__main__":
    main()
