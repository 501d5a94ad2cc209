"""A deterministic, resumable stream of padded task batches from a causalgen corpus.

`TaskStream` is a `torch.utils.data.IterableDataset` that yields ready-made batches: use it
with ``DataLoader(stream, batch_size=None, num_workers=W, pin_memory=...)``, or with
`TaskLoader`, the same DataLoader that also counts the batches handed to the training loop so
that ``stream.state_dict()`` can be saved next to the model checkpoint at any step::

    stream = TaskStream("corpus/", batch_size=32, seed=0, split="train", bucket_by_size=True)
    loader = TaskLoader(stream, num_workers=4, pin_memory=True, persistent_workers=True)
    stream.load_state_dict(ckpt["data"])          # when resuming (same num_workers)
    for epoch in range(stream.epoch, epochs):
        stream.set_epoch(epoch)                   # the same epoch keeps a loaded position
        for batch in loader:
            ...
            ckpt["data"] = loader.state_dict()    # exact: the remaining batches, in order

With a plain DataLoader and workers the training process cannot see which batches were
consumed: pass ``stream.state_dict(batches_done=k)`` (batches of this epoch consumed so far).

This room reads causalgen corpora through `causalgen.open_corpus` and `causalgen.store`'s public
names, and imports nothing else of cina: `select` (filters), `plan` (the epoch plan), `shards`
(reading in workers), `collate` (the batch contract), `stream` (`TaskStream`), `loader`
(`TaskLoader`), `mixture` (several corpora read as one).
"""

from .collate import BATCH_FIELDS, EXTRA_FIELDS, collate_batch
from .loader import TaskLoader
from .mixture import CorpusMixture
from .plan import EpochPlan, plan_epoch
from .select import select_tasks
from .shards import ShardReadError
from .stream import TaskStream

__all__ = ["BATCH_FIELDS", "CorpusMixture", "EXTRA_FIELDS", "EpochPlan", "ShardReadError", "TaskLoader", "TaskStream", "collate_batch",
           "plan_epoch", "select_tasks"]
