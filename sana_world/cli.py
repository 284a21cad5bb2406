"""The ``sana-world`` command line: generate and verify datasets, render ground-truth trajectories to video.

    sana-world data generate --out DIR --trajectories N --steps T --size 128 --shard-size S --seed S
    sana-world data verify DIR
    sana-world render --seed S --steps T --size 128 --out outputs/gt.mp4 [--policy keys] [--layout rgb,depth]
    sana-world render --shard DIR/shard-00000.safetensors --index 0 --out outputs/stored.mp4
    sana-world demo --out outputs

Bad arguments, including a device this machine lacks, an output path below a file or in a read-only
folder and scene seeds in the held-out range (without ``--allow-heldout``), exit with a usage message
(status 2) before any work starts.

This is the layer that may import :mod:`sana_world.controllers` (through the data generation driver).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sana_world.video import GIF_MAX_FPS

LIVE_COLUMNS = ("rgb", "depth", "normal")
STORED_COLUMNS = ("rgb", "depth")
COLUMN_TITLES = {"rgb": "RGB", "depth": "depth", "normal": "normal"}


def int_at_least(low: int, what: str | None = None):
    """An argparse type: an integer >= ``low``; messages name ``what`` was expected ("positive"), or the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            expected = f"a {what} integer" if what else f"an integer >= {low}"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value}" if what
                                             else f"must be >= {low}, got {value}")
        return value

    return parse


_positive_int = int_at_least(1, "positive")
_nonneg_int = int_at_least(0, "non-negative")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _fov(text: str) -> float:
    value = _positive_float(text)
    if not 1.0 <= value < 179.0:
        raise argparse.ArgumentTypeError(f"field of view must lie in [1, 179) degrees, got {text}")
    return value


def _device(text: str) -> str:
    """An argparse type: a torch device this machine has ("cpu", "cuda", "cuda:1", "mps")."""
    if text == "cpu":
        return text  # the default: no torch import just to parse arguments
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"invalid device {text!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise argparse.ArgumentTypeError(f"CUDA is not available ({why}; torch {torch.__version__}): "
                                             "use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise argparse.ArgumentTypeError(f"there is no {text}: this machine has {n} CUDA device(s), "
                                             f"cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("MPS is not available on this machine: use --device cpu")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"device {text!r} is not supported here: use cpu, cuda or cuda:N")
    return text


def _check_out_file(parser: argparse.ArgumentParser, flag: str, path: Path) -> None:
    """``parser.error`` unless ``path`` can be written: not a folder, and the nearest existing folder on
    the way is a writable folder (not a file)."""
    if path.is_dir():
        parser.error(f"{flag} {path} is a folder; give a file name")
    for p in path.parents:
        if p.exists():
            if not p.is_dir():
                parser.error(f"{flag} {path}: {p} is a file, not a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                parser.error(f"{flag} {path}: the folder {p} is not writable")
            return


def _add_world_args(p: argparse.ArgumentParser) -> None:
    """Options of a new trajectory (``render --shard`` ignores them: a stored trajectory has its own)."""
    p.add_argument("--steps", type=_positive_int, default=120,
                   help="actions per trajectory (frames = steps + 1)")
    p.add_argument("--size", type=_positive_int, default=128, help="square frame size in pixels")
    p.add_argument("--policy", choices=("explore", "keys"), default="explore",
                   help="camera policy: random exploration or scripted key presses")
    p.add_argument("--world", choices=("any", "single", "multi"), default="any",
                   help="room layouts the scene sampler may produce")
    p.add_argument("--fov", type=_fov, default=90.0, help="horizontal field of view in degrees, in [1, 179)")
    p.add_argument("--device", type=_device, default="cpu",
                   help="torch device for the renderer (cpu, cuda, cuda:1 ...)")


class _HELP(argparse.HelpFormatter):
    """Each option's help ends with its default where it has one to say (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS or action.required:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sana-world", description=__doc__.split("\n")[0],
                                     formatter_class=_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,data,render}")
    demo = sub.add_parser("demo", formatter_class=_HELP,
                      help="the main job: an agent explores dreamed worlds, written to video")
    demo.add_argument("--out", type=Path, default=Path("outputs"), help="output folder")
    demo.add_argument("--steps", type=_positive_int, default=64,
                      help="dream steps from a held-out GT scene")
    demo.add_argument("--prompt-steps", type=_nonneg_int, default=32,
                      help="dream steps from the text prompt (0 skips it)")
    demo.add_argument("--prompt", default=None,
                      help="scene prompt of the second episode (needs --prompt-steps > 0)")
    demo.add_argument("--ppo-steps", type=_nonneg_int, default=48,
                      help="dream steps of the PPO agent in DreamPointNav (0 skips it)")
    demo.add_argument("--seed", type=_nonneg_int, default=2, help="episode seed")
    demo.add_argument("--policy", default="pointnav-64",
                      help="the PPO episode's agent: a shipped name or an exported policy folder (ppo export)")
    demo.add_argument("--model", default="rooms-128",
                      help="zoo entry that dreams: a shipped name or an entry folder (e.g. ./zoo/mine, made "
                           "by `python -m sana_world.generators.zoo derive`)")
    demo.add_argument("--renderer", choices=("auto", "torch", "open3d"), default="auto",
                      help="GT renderer (auto: open3d on the CPU when installed, else torch)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.set_defaults(subparser=demo)

    # data generate / data verify
    data = sub.add_parser("data", formatter_class=_HELP,
                      help="generate or verify a trajectory dataset")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="{generate,verify}")
    gen = dsub.add_parser("generate", formatter_class=_HELP,
                      help="render trajectories into checksummed shards")
    gen.add_argument("--out", required=True, type=Path, help="output directory (created)")
    gen.add_argument("--trajectories", type=_positive_int, required=True, help="number of trajectories")
    gen.add_argument("--shard-size", type=_positive_int, default=32, help="trajectories per shard file")
    gen.add_argument("--seed", type=_nonneg_int, default=0, help="trajectory i uses scene seed SEED + i")
    _add_world_args(gen)
    gen.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    gen.add_argument("--allow-heldout", action="store_true",
                     help="allow scene seeds >= 1,000,000 (sana_world.data.generate.HELDOUT_START), the "
                          "held-out scenes models are scored on: a scoring set, never train on it")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.set_defaults(subparser=gen)
    ver = dsub.add_parser("verify", formatter_class=_HELP,
                      help="check a dataset's manifest, sizes and sha256 checksums")
    ver.add_argument("dir", type=Path, help="dataset directory (holds manifest.json)")
    ver.add_argument("--no-checksums", action="store_true", help="check sizes and headers only (fast)")

    # render
    ren = sub.add_parser("render", formatter_class=_HELP,
                     help="render a ground-truth trajectory (or a stored one) to a video")
    ren.add_argument("--out", required=True, type=Path, help="output video, .mp4 or .gif")
    ren.add_argument("--seed", type=_nonneg_int, default=None, help="scene seed of a new trajectory")
    ren.add_argument("--shard", type=Path, default=None,
                     help="render a stored trajectory from this shard file, inside its dataset folder (the "
                          "folder's manifest.json is read too), e.g. DIR/shard-00000.safetensors")
    ren.add_argument("--index", type=_nonneg_int, default=0, help="trajectory index within --shard")
    _add_world_args(ren)
    ren.add_argument("--layout", default="rgb,depth",
                     help=f"comma separated columns: {', '.join(LIVE_COLUMNS)} ({', '.join(STORED_COLUMNS)} "
                          "for --shard)")
    ren.add_argument("--fps", type=_positive_float, default=15.0, help="frames per second of the video")
    ren.add_argument("--max-depth", type=_positive_float, default=None,
                     help="depth colour scale in metres (none: the clip's farthest hit)")
    ren.add_argument("--contact-sheet", type=Path, default=None, help="also write a PNG contact sheet here")
    ren.add_argument("--sheet-frames", type=_positive_int, default=12, help="frames on the contact sheet")
    ren.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ren.set_defaults(subparser=ren)  # errors found after parsing print the render usage
    return parser


# ---------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------


def _demo_policy(name: str, size: int, parser: argparse.ArgumentParser) -> Path:
    """The folder of ``--policy`` (a shipped name or a folder), checked to see frames the dream can give."""
    from sana_world.agents.ppo import read_card, shipped_policy

    try:
        folder = Path(name) if Path(name).is_dir() else shipped_policy(name)
        card = read_card(folder)
        side = int(card.env_kwargs["width"])
    except (ValueError, OSError, KeyError) as e:
        parser.error(f"--policy: {e}")
    if card.env_id != "SanaWorld/PointNav-v0":
        parser.error(f"--policy: the demo's agent drives SanaWorld/DreamPointNav-v0; {folder} is a policy for "
                     f"{card.env_id}")
    if size % side:
        parser.error(f"--policy: the agent sees {side}² frames, which the model's {size}² frames cannot be "
                     "area-averaged to (the side must divide the model's)")
    return folder


def _world(args: argparse.Namespace) -> Any:
    from sana_world.worlds import WorldConfig

    return WorldConfig(layout=args.world)


def cmd_generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from sana_world.data.generate import HELDOUT_START, generate, heldout_seeds
    from sana_world.data.shards import MANIFEST

    # 1. checks before any rendering: held-out scenes, the output folder
    last = args.seed + args.trajectories - 1
    held = heldout_seeds(args.seed, args.trajectories)
    if held and not args.allow_heldout:
        parser.error(f"--seed {args.seed} --trajectories {args.trajectories} uses scene seeds "
                     f"{args.seed}..{last}, {len(held)} of them held out (seeds >= {HELDOUT_START:,} are "
                     "kept for scoring models): lower --seed, or pass --allow-heldout to write held-out "
                     "scenes on purpose")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; give a folder for the dataset")
    old = sorted(args.out.glob("shard-?????.safetensors")) + ([args.out / MANIFEST]
                                                              if (args.out / MANIFEST).exists() else [])
    if old and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds a dataset ({old[-1].name}); pass --overwrite to "
                              "replace it")
    # 2. generate
    t0 = time.perf_counter()
    m = generate(args.out, args.trajectories, args.steps, height=args.size, width=args.size,
                 shard_size=args.shard_size, seed=args.seed, policy=args.policy, world=_world(args),
                 device=args.device, progress=not args.no_progress, fov_deg=args.fov,
                 overwrite=args.overwrite, allow_heldout=args.allow_heldout)
    dt = time.perf_counter() - t0
    n = m["num_trajectories"]
    print(f"wrote {n} trajectories in {len(m['shards'])} shard(s) to {args.out} in {dt:.1f} s "
          f"({n / dt:.3g} trajectories/s, {n * (args.steps + 1) / dt:.3g} frames/s)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from sana_world.data.shards import verify

    m = verify(args.dir, checksums=not args.no_checksums)
    what = "sizes and headers" if args.no_checksums else "sha256 checksums"
    print(f"ok: {m['num_trajectories']} trajectories in {len(m['shards'])} shard(s), "
          f"{m['steps']} steps at {m['height']}x{m['width']} ({what} verified)")
    return 0


def _render_live(args: argparse.Namespace, columns: list[str]) -> dict[str, np.ndarray]:
    """Plan and render trajectory ``args.seed``; returns the requested columns (T+1, H, W, ...)."""
    import torch
    from tqdm import tqdm

    from sana_world.camera import intrinsics_from_fov
    from sana_world.data.generate import TrajectoryConfig, default_renderer, plan_trajectory

    cfg = TrajectoryConfig(steps=args.steps, policy=args.policy, world=_world(args))
    plan = plan_trajectory(args.seed, cfg)
    print(f"scene {args.seed}: {plan.caption}")
    renderer = default_renderer(args.device)
    K = intrinsics_from_fov(args.size, args.size, args.fov)
    c2w = torch.from_numpy(plan.c2w)  # (T+1, 4, 4)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    chunk = 16
    bar = tqdm(total=c2w.shape[0], desc="render", unit="frame", disable=args.no_progress)
    for a in range(0, c2w.shape[0], chunk):  # 1. render a chunk, 2. keep the requested columns
        out = renderer.render(plan.spec, c2w[a:a + chunk], K, args.size, args.size)
        bar.update(out.rgb.shape[0])
        if "rgb" in parts:
            parts["rgb"].append(out.rgb.cpu().numpy())
        if "depth" in parts:
            parts["depth"].append(out.depth.float().cpu().numpy())
        if "normal" in parts:  # world normals in [-1, 1] -> uint8, black on miss
            n = out.normal.float().cpu().numpy()  # (B, H, W, 3), zero on miss
            img = np.clip((n * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)
            img[(n == 0).all(axis=-1)] = 0
            parts["normal"].append(img)
    bar.close()
    return {c: np.concatenate(v) for c, v in parts.items()}


def _render_stored(args: argparse.Namespace, columns: list[str]) -> dict[str, np.ndarray]:
    from sana_world.data.shards import read_shard

    shard = read_shard(args.shard)
    n = shard["rgb"].shape[0]
    if args.index >= n:
        raise IndexError(f"--index {args.index} is out of range: {args.shard} holds {n} trajectories")
    i = args.index
    print(f"{args.shard.name}[{i}] (scene {int(shard['seed'][i])}): {shard['captions'][i]}")
    return {c: shard[c][i].astype(np.float32) if c == "depth" else shard[c][i] for c in columns}


def cmd_render(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from sana_world.data.shards import MANIFEST
    from sana_world.video import colorize_depth, contact_sheet, encoded_size, grid, write_video

    # 1. argument combinations argparse cannot express
    if (args.seed is None) == (args.shard is None):
        parser.error("render needs exactly one of --seed (a new trajectory) or --shard (a stored one)")
    if args.out.suffix.lower() not in (".mp4", ".gif"):
        parser.error(f"--out must end in .mp4 or .gif, got {args.out.name!r}")
    if args.contact_sheet is not None and args.contact_sheet.suffix.lower() != ".png":
        parser.error(f"--contact-sheet must end in .png, got {args.contact_sheet.name!r}")
    if args.out.suffix.lower() == ".gif" and args.fps > GIF_MAX_FPS:
        parser.error(f"--fps {args.fps:g}: a GIF plays at most {GIF_MAX_FPS:g} fps (frame delays are whole "
                     "multiples of 10 ms); lower --fps or write an .mp4")
    _check_out_file(parser, "--out", args.out)
    if args.contact_sheet is not None:
        _check_out_file(parser, "--contact-sheet", args.contact_sheet)
    allowed = STORED_COLUMNS if args.shard is not None else LIVE_COLUMNS
    columns = [c.strip() for c in args.layout.split(",") if c.strip()]
    bad = [c for c in columns if c not in allowed]
    if not columns or bad or len(set(columns)) != len(columns):
        parser.error(f"--layout {args.layout!r}: give distinct columns from {', '.join(allowed)}")
    # 2. frames, 3. grid, 4. files
    if args.shard is not None and not args.shard.is_file():
        what = "is a folder; give a shard file in it" if args.shard.is_dir() else "does not exist"
        parser.error(f"--shard {args.shard} {what} (e.g. DIR/shard-00000.safetensors)")
    if args.shard is not None and not (args.shard.parent / MANIFEST).is_file():
        parser.error(f"--shard {args.shard}: its folder has no {MANIFEST}; a shard is read with its "
                     "dataset's manifest, so give a shard file inside the dataset folder that data generate "
                     "wrote")
    frames = _render_stored(args, columns) if args.shard is not None else _render_live(args, columns)
    if "depth" in frames:
        frames["depth"] = colorize_depth(frames["depth"], max_depth=args.max_depth)
    video = grid({COLUMN_TITLES[c]: frames[c] for c in columns})  # (T+1, H, W_total, 3)
    path = write_video(args.out, video, fps=args.fps)
    h, w = encoded_size(video.shape[1], video.shape[2], path)
    padded = ("" if (h, w) == video.shape[1:3]
              else f", padded from {video.shape[2]}x{video.shape[1]} to even sides")
    print(f"wrote {path} ({video.shape[0]} frames, {w}x{h}{padded})")
    if args.contact_sheet is not None:
        contact_sheet(video, args.sheet_frames, args.contact_sheet, columns=3)
        print(f"wrote {args.contact_sheet}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sana-world`` console script; returns the exit status.

    Bad arguments exit with argparse's usage message (status 2); failures while running (a corrupted
    shard, an existing dataset, a file that cannot be written) print ``sana-world: error: ...`` and
    return 1.
    """
    from sana_world.data.shards import ShardError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from sana_world.agents.demo import DemoConfig, check_out, run_demo

            if args.prompt is not None and args.prompt_steps == 0:
                args.subparser.error("--prompt has no effect with --prompt-steps 0 (the prompt episode is "
                                     "skipped): drop --prompt or give --prompt-steps N")
            from sana_world.zoo import ZooError, entry

            try:
                size = entry(args.model, verify=False).resolution  # sha256 is checked on load
            except ZooError as e:
                args.subparser.error(f"--model: {e}")
            policy = None
            if args.ppo_steps:
                policy = _demo_policy(args.policy, size, args.subparser)
            try:
                check_out(args.out, "--out")
            except OSError as e:
                args.subparser.error(str(e))
            extra = {} if args.prompt is None else {"prompt": args.prompt}
            run_demo(DemoConfig(out=args.out, steps=args.steps, prompt_steps=args.prompt_steps,
                                ppo_steps=args.ppo_steps, seed=args.seed, model=args.model, policy=policy,
                                renderer=args.renderer, progress=not args.no_progress, **extra))
            return 0
        if args.command == "data" and args.data_command == "generate":
            return cmd_generate(args, args.subparser)
        if args.command == "data" and args.data_command == "verify":
            return cmd_verify(args)
        return cmd_render(args, args.subparser)
    except (ShardError, OSError, IndexError) as e:  # input and file errors; bugs keep their tracebacks
        print(f"sana-world: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
