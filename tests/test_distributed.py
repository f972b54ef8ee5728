"""cnnbook.distributed: sharding keeps a loader's settings and never changes the caller's."""

from __future__ import annotations

import pytest
import torch
from test_train import toy_arrays
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from cnnbook import distributed
from cnnbook.loaders import GPUBatchLoader


def _collate(batch):
    xs, ys = zip(*batch, strict=True)
    return torch.stack(xs) * 2, torch.stack(ys)


def _init_worker(worker_id: int) -> None:  # pragma: no cover - runs in workers only
    torch.manual_seed(worker_id)


def test_shard_rebuilds_a_dataloader_with_all_its_settings() -> None:
    ds = TensorDataset(torch.arange(10.0).view(10, 1), torch.arange(10))
    gen = torch.Generator().manual_seed(3)
    loader = DataLoader(
        ds,
        batch_size=5,
        shuffle=True,
        collate_fn=_collate,
        generator=gen,
        worker_init_fn=_init_worker,
        drop_last=True,
    )
    sampler_before = loader.sampler
    mine = distributed.shard(loader, rank=1, world=2, seed=7)
    assert mine is not loader  # the caller's is untouched
    assert loader.sampler is sampler_before
    assert isinstance(mine.sampler, DistributedSampler)
    assert (mine.sampler.rank, mine.sampler.num_replicas, mine.sampler.seed) == (1, 2, 7)
    assert mine.collate_fn is _collate
    assert mine.worker_init_fn is _init_worker
    assert mine.generator is gen
    assert mine.drop_last
    assert mine.batch_size == 5
    x, _ = next(iter(mine))
    assert torch.equal(x, x.round())  # our collate_fn ran (doubled)
    assert (x % 2 == 0).all()
    other = distributed.shard(loader, rank=0, world=2, seed=7)
    seen = {int(i) for ld in (mine, other) for _, ys in ld for i in ys}
    assert seen == set(range(10))  # the two shards cover the data
    assert distributed.shard(mine, 1, 2) is mine  # already sharded
    assert distributed.shard(loader, 0, 1) is loader  # one process: nothing to do


def test_shard_copies_a_gpu_batch_loader() -> None:
    loader = GPUBatchLoader(toy_arrays(40), 8, device="cpu")
    mine = distributed.shard(loader, rank=1, world=2)
    assert (loader.rank, loader.world_size) == (0, 1)  # the caller's loader is unchanged
    assert (mine.rank, mine.world_size) == (1, 2)
    assert mine.num_samples == 20
    assert loader.num_samples == 40


def test_shard_errors() -> None:
    with pytest.raises(TypeError, match="Cannot shard a list"):
        distributed.shard([1, 2], 0, 2)
    with pytest.raises(ValueError, match="rank 2 is outside"):
        distributed.shard([1, 2], 2, 2)


def test_outside_torchrun_everything_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup("cpu") == (0, 1, torch.device("cpu"))
    assert distributed.is_main_process()
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t) is t
    assert t.tolist() == [1.0, 2.0]


def test_cnnbook_has_no_import_cycle() -> None:
    """Walk every import between cnnbook modules (also those inside functions) and find cycles."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "cnnbook"
    modules = {
        ".".join(("cnnbook", *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level:  # relative import
                base = name.split(".")[: -node.level + (path.name == "__init__.py")]
                mod = ".".join([*base, *([node.module] if node.module else [])])
                deps.add(mod)
                deps.update(f"{mod}.{a.name}" for a in node.names)
        # a package's own __init__ is not an edge back (importing a.b runs a first)
        graph[name] = {d for d in deps if d in modules and d != name and not name.startswith(d + ".")}
    assert "cnnbook.distributed" in graph["cnnbook.train"]  # the walk sees the edges
    assert "cnnbook.device" in graph["cnnbook.loaders"]  # ... also imports inside functions

    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
