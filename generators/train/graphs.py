"""One training step's forward and backward as a single CUDA graph.

Small models on big GPUs are launch-bound: the ``rooms`` world model issues about ten thousand kernels a
step, each far shorter than its launch. :class:`GraphedLoss` captures ``loss_fn(**inputs)`` and its
backward once (after a few warm-up runs on a side stream, which also let cuDNN pick its algorithms) and then
replays it: every call copies the new inputs into the captured (static) buffers, replays, and leaves the
gradients in the parameters' ``.grad`` (the same tensors every step, overwritten, never accumulated).

What stays outside the graph, in the trainer: drawing the step's noise and timesteps (so exact resume is
unchanged), the gradient all-reduce across ranks (:func:`all_reduce_grads`: one flat NCCL call, used
instead of DDP, whose hooks cannot be captured), clipping, the optimizer and the EMA.

Rules for ``loss_fn``: tensors in, a scalar tensor out; fixed shapes; no host synchronisation (no
``.item()``, no data-dependent Python branches); autocast with ``cache_enabled=False``
(:func:`~sana_world.generators.train.common.autocast` with ``cache=False``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["GraphedLoss", "all_reduce_grads"]


class GraphedLoss:
    """``loss_fn`` forward + backward captured in a CUDA graph on the first call, replayed afterwards.

    Args:
        loss_fn: ``loss_fn(**inputs) -> scalar tensor``; see the module doc for its rules.
        model: the module whose parameters receive gradients.
        warmup: eager runs (on a side stream) before the capture.
    """

    def __init__(self, loss_fn: Callable[..., torch.Tensor], model: nn.Module, warmup: int = 3) -> None:
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (cuDNN and the allocator settle before capture), got {warmup}")
        self.loss_fn, self.model, self.warmup = loss_fn, model, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict[str, torch.Tensor] = {}
        self.loss: torch.Tensor | None = None

    def _params(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _capture(self, inputs: dict[str, torch.Tensor]) -> None:
        self.static = {k: v.detach().clone() for k, v in inputs.items()}
        params = self._params()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):  # 1. eager warm-up: autotuning and allocations happen here
                for p in params:
                    p.grad = None
                self.loss_fn(**self.static).backward()
        torch.cuda.current_stream().wait_stream(side)
        for p in params:  # 2. the graph allocates the .grad tensors it writes every replay
            p.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = self.loss_fn(**self.static)
            loss.backward()
        self.graph, self.loss = graph, loss.detach()
        missing = [i for i, p in enumerate(params) if p.grad is None]
        if missing:
            raise RuntimeError(f"GraphedLoss: {len(missing)} trainable parameters got no gradient in the "
                               "captured backward; a graph needs every gradient tensor to exist")

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Copy ``inputs`` into the graph's buffers, replay; returns the loss (a tensor the next call overwrites)."""
        if any(v.device.type != "cuda" for v in inputs.values()):
            raise ValueError("GraphedLoss needs every input on a CUDA device")
        if self.graph is None:
            self._capture(inputs)
        elif inputs.keys() != self.static.keys():
            raise ValueError(f"GraphedLoss inputs changed: captured {sorted(self.static)}, got {sorted(inputs)}")
        for name, value in inputs.items():  # 1. new data into the static buffers (shapes are fixed)
            if value.shape != self.static[name].shape:
                raise ValueError(f"GraphedLoss input {name!r} has shape {tuple(value.shape)}; the graph was "
                                 f"captured with {tuple(self.static[name].shape)}")
            self.static[name].copy_(value)
        self.graph.replay()  # 2. forward and backward
        assert self.loss is not None
        return self.loss


def all_reduce_grads(model: nn.Module) -> None:
    """Average every gradient over the process group with one flat all-reduce (a no-op when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])  # (P,)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(flat.split([g.numel() for g in grads]), grads)])
