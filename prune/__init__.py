"""The model side: the pruned encoder, the few-shot head, evaluation and config search.

Knows nothing of Ray, Redis or Parquet jobs.
"""

import os

# weights are never fetched from a hub at run time
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prune.config import EncoderOptions, PruneConfig
from prune.encoder import Encoder, EncodeResult
from prune.model import ModelError

__all__ = ["EncodeResult", "Encoder", "EncoderOptions", "ModelError", "PruneConfig"]
