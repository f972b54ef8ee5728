"""Process-group helpers for data-parallel training with ``torchrun`` (section 14.15).

:func:`cnnbook.train.fit` trains one model in one process. To train on several GPUs (or CPU
processes), start one process per device with ``torchrun --nproc_per_node=N script.py`` and
call :func:`cnnbook.train.fit_distributed` in it: it joins the process group (:func:`setup`),
gives each process its shard of the training data (:func:`shard`), wraps the model in
``DistributedDataParallel`` and runs ``fit``, which averages the epoch's loss and accuracy over
the processes (:func:`all_reduce_sum`) and prints and writes checkpoints on rank 0 only
(:func:`is_main_process`). This module imports nothing from :mod:`cnnbook.train`.
``scripts/train_cifar.py`` is a complete example.
"""

from __future__ import annotations

import atexit
import copy
import os
from collections.abc import Iterable

import torch

__all__ = ["all_reduce_sum", "distributed_env", "is_main_process", "setup", "shard"]


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as set by ``torchrun`` (``(0, 1, 0)`` otherwise)."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """``True`` outside a process group and on rank 0 inside one (the rank that prints)."""
    import torch.distributed as dist

    return not _group_ready() or dist.get_rank() == 0


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over the processes of the group, in place (no-op without a group)."""
    if _group_ready():
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


def setup(device: torch.device | str | None = None) -> tuple[int, int, torch.device]:
    """Join the ``torchrun`` process group (gloo on CPU, NCCL on CUDA) if there is one.

    Args:
        device: The device type to train on (``None``: :func:`cnnbook.device.pick_device`).
            On CUDA each process takes the GPU ``LOCAL_RANK``.

    Returns:
        ``(rank, world_size, device)``; ``(0, 1, device)`` when not started by ``torchrun``.
    """
    import torch.distributed as dist

    from cnnbook.device import pick_device

    device = pick_device() if device is None else torch.device(device)
    rank, world, local = distributed_env()
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Kept for later calls in this process (re-creating a group after destroying it can
        # hang) and closed when the process exits.
        atexit.register(dist.destroy_process_group)
    return dist.get_rank(), dist.get_world_size(), device


def shard(loader: Iterable, rank: int, world: int, seed: int = 0) -> Iterable:
    """This rank's share of a training loader, as a new loader (``loader`` is not changed).

    A :class:`cnnbook.loaders.GPUBatchLoader` is copied with ``rank``/``world_size`` set. A
    ``DataLoader`` is rebuilt with a shuffling ``DistributedSampler`` and otherwise the same
    settings: dataset, batch size, ``collate_fn``, workers and their ``worker_init_fn``,
    ``generator``, pinned memory, ``drop_last``, timeout, prefetching.

    Args:
        loader: The whole-dataset training loader.
        rank: This process's rank.
        world: Number of processes.
        seed: Seed of the sampler's shuffle (the same on every rank).

    Returns:
        The sharded loader (``loader`` itself when ``world`` is 1 or it is already sharded).

    Raises:
        TypeError: For a loader that cannot be sharded.
        ValueError: If ``rank`` is not in ``[0, world)``.
    """
    from torch.utils.data import DataLoader, DistributedSampler

    if world <= 1:
        return loader
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside [0, world={world}).")
    if hasattr(loader, "world_size") and hasattr(loader, "rank"):
        if loader.world_size > 1:
            return loader
        mine = copy.copy(loader)
        mine.rank, mine.world_size = rank, world
        return mine
    if isinstance(loader, DataLoader):
        if isinstance(loader.sampler, DistributedSampler):
            return loader
        if loader.batch_size is None:
            raise TypeError(
                "Cannot shard a DataLoader with a custom batch_sampler; give it a "
                "DistributedSampler yourself."
            )
        sampler: DistributedSampler[int] = DistributedSampler(
            loader.dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        workers = loader.num_workers
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            generator=loader.generator,
            multiprocessing_context=loader.multiprocessing_context,
            prefetch_factor=loader.prefetch_factor if workers > 0 else None,
            persistent_workers=loader.persistent_workers and workers > 0,
        )
    raise TypeError(
        f"Cannot shard a {type(loader).__name__} across processes; use a "
        "DataLoader or cnnbook.loaders.GPUBatchLoader."
    )
