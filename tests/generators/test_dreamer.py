"""The Dreamer's streaming loop reproduces the training-time chunk-by-chunk sampler on the shipped models."""

from __future__ import annotations

import torch

from sana_world.generators import zoo
from sana_world.generators.dreamer import Dreamer, DreamerConfig
from sana_world.generators.train import wm_data


def test_stream_equals_chunk_causal_sampler_of_training() -> None:
    models = zoo.load("rooms-128")
    from sana_world.data.pool import ClipPool, PoolConfig, pool_generator

    pool = ClipPool(PoolConfig(trajectories=2, steps=4, workers=0, seed=1_000_000), progress=False)
    clip = pool.clips(5, 2, pool_generator(0, 1, 0))  # rgb (2, 5, 128, 128, 3)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 16, 5, 16, 16, generator=g)
    # 1. training's sampler: one chunk-causal pass over the clip per Euler step, chunk after chunk
    images, K = wm_data.to_clip_images(clip["rgb"], clip["K"], 128)
    with torch.no_grad():
        x0 = wm_data.encode_latent_frames(models.codec, images, 1)
    cam = wm_data.build_camera_inputs(clip["c2w"], K, 128, (16, 16), 1)
    emb = models.text.encode(clip["captions"])
    ref = wm_data.dream(models.world_model, x0[:, :, 0], noise, emb, cam, {"chunk_size": 1},
                        wm_data.chunk_bounds(5, 1)[1:], 2, 2.0)  # (2, 16, 5, 16, 16)
    # 2. the streaming Dreamer from the same anchor, poses and noise
    dreamer = Dreamer(models, DreamerConfig(num_steps=2, shift=2.0))
    state = dreamer.start(clip["rgb"][:, 0], clip["c2w"][:, 0], clip["K"], clip["captions"])
    for t in range(1, 5):
        _, state = dreamer.step(state, clip["c2w"][:, t], noise=noise[:, :, t:t + 1])
        err = (state.last - ref[:, :, t]).abs().max() / ref[:, :, t].abs().max()
        assert err < 1e-4, (t, float(err))
    assert state.frame == 5
