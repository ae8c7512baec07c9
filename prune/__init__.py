"""The model side: the pruned encoder, the few-shot head, evaluation and config search.

Knows nothing of Ray, Redis or Parquet jobs.
"""

# nothing is fetched from a model hub at run time: prune.models.files reads the model's folder with
# local_files_only

from typing import TYPE_CHECKING, Any

from prune.config import EncoderOptions, PruneConfig
from prune.errors import ModelError

if TYPE_CHECKING:
    from prune.encoder import Encoder, EncodeResult

__all__ = ["EncodeResult", "Encoder", "EncoderOptions", "ModelError", "PruneConfig"]


def __getattr__(name: str) -> Any:
    """The encoder (and torch with it) is imported on first use, so the job driver, queries and
    reports, which only need configs and errors, start without torch."""
    if name in ("Encoder", "EncodeResult"):
        from prune import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module 'prune' has no attribute {name!r}")
