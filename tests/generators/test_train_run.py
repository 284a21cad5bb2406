"""The trainers' shared run layer: what a resume compares, the fallback past a damaged checkpoint, CLI
errors, progress lines without a bar, and SIGINT / SIGTERM ending a run with a checkpoint."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_train_state, tiny_train_step
from sana_world.generators.train.common import (
    CheckpointError,
    DistInfo,
    read_checkpoint_state,
    save_checkpoint,
)
from sana_world.generators.train.errors import RunInterrupted, usage_error
from sana_world.generators.train.resume import check_resume, input_records, resume_or_start
from sana_world.generators.train.run import RESUMABLE_FIELDS, RunConfig, RunLoop


def write_dataset(root: Path, seeds: list[int], frames: int = 4, size: int = 16, value: int = 0) -> Path:
    """A small shard dataset of random frames (no rendering), one trajectory per scene seed."""
    from sana_world.data.shards import ShardWriter, Trajectory

    rng = np.random.default_rng(value)
    with ShardWriter(root, shard_size=2) as writer:
        for s in seeds:
            writer.add(Trajectory(rgb=rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8),
                                  depth=np.ones((frames, size, size), np.float16),
                                  c2w=np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1)),
                                  K=np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]],
                                             np.float32),
                                  actions=np.zeros((frames - 1, 6), np.float32), caption="a red room",
                                  spec_json="{}", seed=s))
    return root


def test_usage_errors_name_fields_for_the_api_and_flags_for_the_cli() -> None:
    err = usage_error(FileExistsError, "pass <resume=True> or a new <out_dir>; <steps=6> is <progress=False>")
    assert isinstance(err, FileExistsError)
    assert str(err) == "pass resume=True or a new out_dir; steps=6 is progress=False"
    assert err.cli_message == "pass --resume or a new --out-dir; --steps 6 is --no-progress"


def test_run_errors_survive_pickling() -> None:
    """Errors cross process boundaries (multiprocessing, spawned ranks) intact."""
    import pickle

    e = pickle.loads(pickle.dumps(RunInterrupted(signal.SIGTERM, 2, Path("x"))))
    assert (e.signum, e.step, e.checkpoint, e.exit_code) == (signal.SIGTERM, 2, Path("x"), 128 + signal.SIGTERM)
    assert str(e) == "SIGTERM after step 2; checkpoint x"
    u = pickle.loads(pickle.dumps(usage_error(ValueError, "bad <steps=3>")))
    assert (str(u), u.cli_message) == ("bad steps=3", "bad --steps 3")


def test_resume_compares_what_the_config_means(tmp_path, monkeypatch) -> None:
    """Paths are resolved, inputs compared by content (a moved dataset resumes, an overwritten export does
    not), worker counts and data verification may change; checkpoints without fingerprints compare paths."""
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "runs" / "ae" / "export"
    export.mkdir(parents=True)
    (export / "config.json").write_text('{"_class_name": "AutoencoderDC"}')
    (export / "diffusion_pytorch_model.safetensors").write_bytes(b"weights of step 8")
    write_dataset(tmp_path / "data", [0, 1])
    shutil.copytree(tmp_path / "data", tmp_path / "moved")
    write_dataset(tmp_path / "other", [0, 1], value=1)

    def resolved(**kw):
        flat = {"autoencoder": "runs/ae/export", "text_encoder": "procedural", "data_dir": "data",
                "pool_workers": 8, "verify_data": True, "lr": 1e-4, **kw}
        return {**flat, "inputs": input_records(flat, ("autoencoder", "text_encoder", "data_dir"))}

    saved = resolved()
    assert set(saved["inputs"]) == {"autoencoder", "data_dir"}  # "procedural" is built in
    check_resume(saved, resolved(autoencoder=str(export), data_dir=str(tmp_path / "moved"), pool_workers=2,
                                 verify_data=False), tmp_path, RESUMABLE_FIELDS)
    with pytest.raises(ValueError, match=r"data_dir .*other is not the input") as e:
        check_resume(saved, resolved(data_dir="other"), tmp_path, RESUMABLE_FIELDS)
    assert "--data-dir" in e.value.cli_message and "--out-dir" in e.value.cli_message
    with pytest.raises(ValueError, match=r"lr \(saved 0.0001, now 0.001\)"):
        check_resume(saved, resolved(lr=1e-3), tmp_path, RESUMABLE_FIELDS, defaults={"lr": 1e-4})
    # a checkpoint written before fingerprints: the same resolved path, or the same content at the saved path
    legacy = {k: v for k, v in saved.items() if k != "inputs"}
    check_resume(legacy, resolved(autoencoder=str(export), data_dir="moved"), tmp_path, RESUMABLE_FIELDS)
    with pytest.raises(ValueError, match="no fingerprint"):
        check_resume(legacy, resolved(data_dir="other"), tmp_path, RESUMABLE_FIELDS)
    # the export overwritten by further autoencoder training: same path, other weights
    (export / "diffusion_pytorch_model.safetensors").write_bytes(b"weights of step 12")
    with pytest.raises(ValueError, match="autoencoder .*export is not the input the run was trained with"):
        check_resume(saved, resolved(), tmp_path, RESUMABLE_FIELDS)


def test_fingerprints_only_what_is_loaded_and_only_when_needed(tmp_path, monkeypatch) -> None:
    """A SANA pipeline folder given as the autoencoder is fingerprinted by its vae/ files (not its multi-GB
    transformer); a fresh start hashes nothing (the records get their fingerprints at a checkpoint or a
    resume)."""
    import dataclasses

    from sana_world.generators.train import resume
    from sana_world.generators.train.run import resolved_config

    pipe = tmp_path / "pipe"
    for sub in ("vae", "transformer", "text_encoder", "tokenizer"):
        (pipe / sub).mkdir(parents=True)
        (pipe / sub / "config.json").write_text("{}")
        (pipe / sub / "model.safetensors").write_bytes(b"w")
    (pipe / "model_index.json").write_text("{}")
    ae, te = resume.fingerprint(pipe, "autoencoder"), resume.fingerprint(pipe, "text_encoder")
    (pipe / "transformer" / "model.safetensors").write_bytes(b"other transformer")
    assert resume.fingerprint(pipe, "autoencoder") == ae and resume.fingerprint(pipe, "text_encoder") == te
    (pipe / "tokenizer" / "tokenizer.json").write_text("{}")
    assert resume.fingerprint(pipe, "text_encoder") != te
    (pipe / "vae" / "model.safetensors").write_bytes(b"other vae")
    assert resume.fingerprint(pipe, "autoencoder") != ae

    @dataclasses.dataclass
    class Config:
        model: str = "tiny"
        autoencoder: str = str(pipe)

    monkeypatch.setattr(resume, "file_sha256", lambda path: pytest.fail(f"hashed {path} at start"))
    d = resolved_config(Config(), Config(), "X", "x", inputs=("autoencoder",))
    assert d["inputs"] == {"autoencoder": {"path": str(pipe.resolve())}}


def test_resume_falls_back_past_a_damaged_checkpoint(tmp_path, caplog) -> None:
    state = tiny_train_state()
    for _ in range(2):
        tiny_train_step(state)
        save_checkpoint(tmp_path / "checkpoints", state, {"lr": 1.0})
    bad = tmp_path / "checkpoints" / "step-00000002"
    (bad / "model.safetensors").write_bytes(b"x" * 1000)  # truncated
    run = RunConfig(steps=5, resume=True, out_dir=str(tmp_path))
    fresh = tiny_train_state(1)
    with caplog.at_level(logging.WARNING):
        resume_or_start(fresh, run, {"lr": 1.0}, DistInfo(), RESUMABLE_FIELDS)
    assert fresh.step == 1
    aside = bad.with_name("step-00000002.damaged")
    assert not bad.exists() and (aside / "trainer_state.json").is_file()
    assert "1000 bytes" in caplog.text and f"moved to {aside.name}" in caplog.text and str(aside) in caplog.text
    (tmp_path / "checkpoints" / "step-00000001" / "optimizer.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="(?s)no checkpoint in .* verifies.*step-0+1"):
        resume_or_start(tiny_train_state(1), run, {"lr": 1.0}, DistInfo(), RESUMABLE_FIELDS)
    with pytest.raises(FileExistsError, match="resume=True") as e:  # a fresh run over old checkpoints
        resume_or_start(tiny_train_state(1), RunConfig(steps=5, out_dir=str(tmp_path)), {}, DistInfo(),
                        RESUMABLE_FIELDS)
    assert "pass --resume" in e.value.cli_message and "--out-dir" in e.value.cli_message


def test_a_damaged_checkpoint_leaves_the_rotation(tmp_path) -> None:
    """keep_last=2 over step 3 (good) and step 4 (damaged): after resuming from 3, the next checkpoint prunes
    nothing good (the damaged one no longer counts) and does not silently overwrite it."""
    from sana_world.generators.train.common import list_checkpoints

    state, root = tiny_train_state(), tmp_path / "checkpoints"
    for _ in range(4):
        tiny_train_step(state)
        save_checkpoint(root, state, {"lr": 1.0}, keep_last=2)
    (root / "step-00000004" / "model.safetensors").write_bytes(b"x" * 1000)
    fresh = tiny_train_state(1)
    resume_or_start(fresh, RunConfig(steps=9, resume=True, out_dir=str(tmp_path), keep_last=2), {"lr": 1.0},
                    DistInfo(), RESUMABLE_FIELDS)
    assert fresh.step == 3
    fresh.step = 5
    save_checkpoint(root, fresh, {"lr": 1.0}, keep_last=2)
    assert [p.name for p in list_checkpoints(root)] == ["step-00000003", "step-00000005"]
    assert (root / "step-00000004.damaged").is_dir()


def test_without_a_bar_a_line_every_log_interval(tmp_path, capsys) -> None:
    state = tiny_train_state()
    run = RunConfig(steps=4, log_every=2, progress=False, out_dir=str(tmp_path))
    with RunLoop(run, state, {}, DistInfo(), desc="test", rate_name="items_per_s") as loop:
        for step in range(1, 5):
            loop.end_step(step, tiny_train_step(state), lr=1e-3, grad_norm=0.5, items=5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 2/4", "step 4/4"]
    assert "loss" in lines[0] and "items_per_s" in lines[0]


def test_a_signal_ends_the_loop_after_the_step_with_a_checkpoint(tmp_path) -> None:
    state = tiny_train_state()
    run = RunConfig(steps=100, ckpt_every=50, out_dir=str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    loop = RunLoop(run, state, {}, DistInfo(), "test", "items_per_s")
    with pytest.raises(RunInterrupted) as e, loop:
        loop.end_step(1, tiny_train_step(state), lr=1e-3, grad_norm=0.5, items=5)
        signal.raise_signal(signal.SIGTERM)  # handled: the step goes on
        loop.end_step(2, tiny_train_step(state), lr=1e-3, grad_norm=0.5, items=5)
    assert e.value.step == 2 and e.value.exit_code == 128 + signal.SIGTERM
    assert e.value.checkpoint == tmp_path / "checkpoints" / "step-00000002"
    assert read_checkpoint_state(e.value.checkpoint)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored


def test_a_signal_during_the_last_step_is_not_swallowed(tmp_path, capsys) -> None:
    """The run does not return normally (its post-loop work would run): RunInterrupted after the last
    step's checkpoint. The handler prints nothing (tqdm may be writing); the loop announces the signal."""
    state = tiny_train_state()
    loop = RunLoop(RunConfig(steps=2, out_dir=str(tmp_path), progress=False), state, {}, DistInfo(), "t", "x")
    with pytest.raises(RunInterrupted) as e, loop:
        loop.end_step(1, tiny_train_step(state), lr=1e-3, grad_norm=0.5, items=1)
        signal.raise_signal(signal.SIGTERM)
        assert capsys.readouterr().err == ""
        loop.end_step(2, tiny_train_step(state), lr=1e-3, grad_norm=0.5, items=1)
    assert "SIGTERM: writing a checkpoint after step 2" in capsys.readouterr().err
    assert e.value.step == 2 and read_checkpoint_state(e.value.checkpoint)["step"] == 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_cli_run_checkpoints_and_says_how_to_resume(tmp_path, sig) -> None:
    """The flow-matching CLI (the loop is shared by every trainer), sent a signal after its first step."""
    from sana_world.generators.train.flow_matching import main

    data = write_dataset(tmp_path / "ds", [0, 1])
    args = ["--preset", "tiny", "--data-dir", str(data), "--resolution", "16", "--batch-size", "2",
            "--warmup-steps", "1", "--no-progress", "--log-every", "1", "--out-dir", str(tmp_path / "run")]
    cmd = [sys.executable, "-m", "sana_world.generators.train.flow_matching", *args, "--steps", "100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    try:
        while (line := proc.stdout.readline()) and not line.startswith("step 1/"):
            lines.append(line)
        assert line.startswith("step 1/"), "".join(lines)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    out = "".join(lines) + line + out
    assert proc.returncode == 128 + sig, out
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith(signal.Signals(sig).name) and "rerun the same command with --resume" in last, out
    ckpt = Path(last.split("checkpoint written to ")[1].split(";")[0])
    step = read_checkpoint_state(ckpt)["step"]
    assert step >= 1 and ckpt.parent == tmp_path / "run" / "checkpoints"
    if sig == signal.SIGINT:  # the advice works
        assert main([*args, "--steps", str(step + 1), "--resume"]).step == step + 1
