"""sprint_student.py on the CPU: the same noise through the same sampler lands on the same image (the teacher
at the reference's step count scores as an exact copy), every row is measured, and a non-student is refused."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_rows_are_scored_against_the_reference(tmp_path: Path, monkeypatch) -> None:
    import sprint_student

    from sana_world.generators.train.sprint import load_teacher, student_from_teacher
    from sana_world.zoo import ZOO_ROOT

    image = ZOO_ROOT / "rooms-128" / "image"
    student = student_from_teacher(load_teacher(image, torch.device("cpu")))
    folder = tmp_path / "student"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"_class_name": "SanaDiT",
                                                    "config": dataclasses.asdict(student.cfg), "step": 0}))
    argv = ["sprint_student.py", "--student", str(folder), "--prompts", "2", "--batch", "2", "--ref-steps", "2",
            "--teacher-steps", "2", "1", "--student-steps", "1", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    sprint_student.main()
    (path,) = tmp_path.glob("sprint_student_cpu*.json")
    rows = json.loads(path.read_text())["rows"]
    assert [(r["model"], r["steps"]) for r in rows] == [("teacher", 2), ("teacher", 2), ("teacher", 1),
                                                          ("student", 1)]
    assert rows[1]["psnr_db"] > 100  # the reference again: the same noise, the same image
    assert 5 < rows[2]["psnr_db"] < 60 and 5 < rows[3]["psnr_db"] < 60 and all(r["ms"] > 0 for r in rows)
    assert path.with_suffix(".png").is_file()
    monkeypatch.setattr(sys, "argv", ["sprint_student.py", "--student", str(image),
                                      "--out", str(tmp_path)])
    with pytest.raises(SystemExit):  # a flow model is no student
        sprint_student.main()
