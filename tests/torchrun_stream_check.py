"""Run by tests/test_data.py under ``torchrun --nproc_per_node=2`` (gloo, CPU).

Each rank builds a `TaskStream` without rank/world arguments (they must come from
torch.distributed), trains a tiny DDP model for two epochs with 2 DataLoader workers (a rank with
fewer batches would hang the other in the gradient all-reduce), resumes epoch 2 mid-way from a
state dict, and writes what it saw to ``OUT/rank{r}.json`` for the test to compare.

usage: torchrun --standalone --nproc_per_node=2 tests/torchrun_stream_check.py CORPUS OUT
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from cina.data import TaskLoader, TaskStream  # the package is installed (editable) in the venv

BATCH, SEED, WORKERS, RESUME_AT = 4, 7, 2, 3


def ids_of(loader) -> list[list[int]]:
    return [batch["task_index"].tolist() for batch in loader]


def main(corpus: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    stream = TaskStream(corpus, BATCH, seed=SEED)
    loader = TaskLoader(stream, num_workers=WORKERS)
    model = DDP(torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    record = {"rank": stream.rank, "world_size": stream.world_size, "len": len(loader), "epochs": []}
    for epoch in range(2):
        stream.set_epoch(epoch)
        seen = []
        for batch in loader:
            opt.zero_grad()
            model(batch["ate"][:, None]).pow(2).mean().backward()  # all-reduce every step
            opt.step()
            seen.append(batch["task_index"].tolist())
        record["epochs"].append(seen)

    # Mid-epoch resume on every rank: RESUME_AT batches, checkpoint, a fresh stream continues.
    first = TaskStream(corpus, BATCH, seed=SEED)
    first.set_epoch(2)
    head = []
    for batch in TaskLoader(first, num_workers=WORKERS):
        head.append(batch["task_index"].tolist())
        if len(head) == RESUME_AT:
            break
    state = first.state_dict()
    second = TaskStream(corpus, BATCH, seed=SEED)
    second.load_state_dict(state)
    second.set_epoch(2)  # same epoch: keeps the resume position
    record["resumed"] = head + ids_of(TaskLoader(second, num_workers=WORKERS))
    full = TaskStream(corpus, BATCH, seed=SEED)
    full.set_epoch(2)
    record["epoch2"] = ids_of(TaskLoader(full, num_workers=WORKERS))
    record["state"] = state
    record["weight"] = float(model.module.weight.detach())

    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump(record, fh)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
