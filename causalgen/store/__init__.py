"""The store: tasks to and from sharded zarr corpora on any fsspec filesystem.

`shard` encodes a shard, `manifest` indexes a corpus, `generate` writes one (resumably, in
parallel), `corpus` reads and verifies it, `splits` assigns each task its train/validation/test
split. This room imports `causalgen.prior` only (never `causalgen.hub`).
"""

from .corpus import Corpus, VerifyReport, open_corpus, read_manifest, verify_corpus
from .generate import CorpusSpec, generate_corpus
from .manifest import MANIFEST_NAME, CorpusError, FormatVersionError, Manifest, task_seed
from .shard import ShardData, ShardError
from .splits import SPLITS, split_codes, split_of

__all__ = ["Corpus", "CorpusError", "CorpusSpec", "FormatVersionError", "MANIFEST_NAME", "Manifest", "SPLITS",
           "ShardData", "ShardError", "VerifyReport", "generate_corpus", "open_corpus", "read_manifest", "split_codes",
           "split_of", "task_seed", "verify_corpus"]
