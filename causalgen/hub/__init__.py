"""The hub: a corpus as a Hugging Face dataset repository, and reading one back.

`parquet_view` (one row per task, explicit `datasets.Features`), `card` (the dataset card),
`layout` (the published folder and its manifest), `publish` (build and push:
``causalgen.hub.publish.publish``), `reader` (local folders and ``hf://`` URLs). This room imports
`causalgen.prior` and `causalgen.store`.
"""

from .reader import PublishedCorpus, download_published, is_published, open_published, verify_published

__all__ = ["PublishedCorpus", "download_published", "is_published", "open_published", "verify_published"]
