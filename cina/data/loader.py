"""`TaskLoader`: the DataLoader that counts the batches it hands to the training loop, so that
the stream's resume position is exact at any step."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import DataLoader

from .stream import TaskStream

__all__ = ["TaskLoader"]


class TaskLoader(DataLoader):
    """``DataLoader(stream, batch_size=None, ...)`` that counts the batches it hands out, so
    ``loader.state_dict()`` (= ``stream.state_dict()``) is exact at any step, with or without
    workers. ``len(loader)`` is the batch count of this rank per epoch. Other keyword arguments
    (prefetch_factor, persistent_workers, timeout, multiprocessing_context, ...) pass through;
    ``in_order`` stays True because the resume position relies on round-robin delivery.
    """

    def __init__(self, stream: TaskStream, *, num_workers: int = 0, pin_memory: bool = False, **kwargs: Any):
        if not isinstance(stream, TaskStream):
            raise TypeError(f"TaskLoader: expected a TaskStream, got {type(stream).__name__}")
        if kwargs.pop("in_order", True) is not True:
            raise ValueError("TaskLoader: in_order=False would make the batch order (and resume) nondeterministic")
        for bad in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn", "drop_last"):
            if bad in kwargs:
                raise ValueError(f"TaskLoader: {bad} is set on the TaskStream, not the loader")
        super().__init__(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kwargs)
        self.stream = stream

    def __len__(self) -> int:
        return self.stream.batches_per_epoch(self.num_workers)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        stream = self.stream
        if self.num_workers == 0:
            yield from super().__iter__()  # the stream counts in-process iteration itself
            return
        stream._begin(self.num_workers)  # before the workers read the shared resume position
        for batch in super().__iter__():
            stream._count()
            yield batch

    def state_dict(self) -> dict[str, Any]:
        state = self.stream.state_dict()
        state["num_workers"] = self.num_workers
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state)
