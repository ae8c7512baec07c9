"""The encoder of a job's actor: its dtype chosen on the actor's own node, and why.

``--dtype auto`` means int8 where it pays and can run (``prune.config.job_dtype_choice``): what
int8 needs is checked on the node first (its built graphs, else a C++ compiler to build them), and
where it cannot run the actor falls back to bf16 or fp32 and says why. An explicit ``--dtype
int8`` that cannot run on the node is refused (``Int8Unavailable``), before any unit is taken.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from prune.config import DtypeChoice, EncoderOptions, int8_min_rows, job_dtype_choice, resolve_dtype
from prune.cpu import native_int8
from prune.errors import Int8Unavailable
from workers.job_spec import JobSpec

if TYPE_CHECKING:
    from prune import Encoder
    from prune.encoder import Int8Readiness


def int8_readiness_for(spec: JobSpec) -> Int8Readiness:
    """What int8 needs, checked on this node for the job's model and pruning (at the actor's one
    thread per stream, the thread count its graphs are built for)."""
    import torch

    from prune.encoder import int8_readiness
    from prune.models.files import load_config, model_fingerprint, read_spec

    torch.set_num_threads(1)
    layers = load_config(read_spec(spec.model)).num_hidden_layers
    options = EncoderOptions(dtype="int8", token_budget=spec.token_budget)
    return int8_readiness(model_fingerprint(spec.model), layers, spec.prune, options)


def int8_problem(spec: JobSpec) -> str | None:
    """Why an explicit ``--dtype int8`` cannot run on this node (named), or None."""
    problem = int8_readiness_for(spec).problem
    return f"node {socket.gethostname()}: {problem}" if problem else None


def node_problem(spec: JobSpec) -> str | None:
    """Why the job cannot run on this node (named), or None: its model is missing or unreadable
    here (a model given by name must be installed on every node), or an explicit ``--dtype int8``
    cannot run. The driver asks every node before it creates the job."""
    from prune.errors import ModelError
    from prune.models.files import check_model

    if spec.model is not None:
        try:
            check_model(spec.model)
        except ModelError as exc:
            return f"node {socket.gethostname()}: {exc}"
    return int8_problem(spec) if spec.dtype == "int8" else None


def rows_per_stream(spec: JobSpec) -> int | None:
    """The rows each of the actor's encode streams is expected to encode: one stream per CPU, all
    sharing the actor's one int8 load, so int8 pays per stream."""
    if spec.rows_per_actor is None:
        return None
    return -(-spec.rows_per_actor // (spec.cpus_per_actor or 1))


def job_encoder(spec: JobSpec) -> tuple[Encoder, str]:
    """The actor's encoder and why it runs its dtype. Call it with the actor's thread count set."""
    from prune import Encoder
    from prune.models import INT8_IN_AUTO
    from prune.models.files import load_config, read_spec

    rows = rows_per_stream(spec)
    family = load_config(read_spec(spec.model)).model_type
    lossy = spec.dtype == "auto" and family not in INT8_IN_AUTO  # int8 only when asked for
    large = spec.dtype == "auto" and not lossy and native_int8() and (rows or 0) >= int8_min_rows(built=True)
    ready = int8_readiness_for(spec) if spec.dtype == "int8" or large else None
    if spec.dtype == "int8" and ready is not None and ready.problem:
        raise Int8Unavailable(f"--dtype int8 cannot run on node {socket.gethostname()}: {ready.problem}")
    if lossy:
        choice = DtypeChoice(
            "auto", f"int8 loses accuracy on {family} models; auto picks it for {sorted(INT8_IN_AUTO)}"
        )
    else:
        choice = job_dtype_choice(
            spec.dtype, rows, built=bool(ready and ready.built), problem=ready.problem if ready else None
        )
    encoder = Encoder(
        spec.model, spec.prune, EncoderOptions(dtype=resolve_dtype(choice.dtype), token_budget=spec.token_budget)
    )
    return encoder, choice.why
