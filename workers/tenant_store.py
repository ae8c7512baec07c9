"""CentroidStore: per-tenant few-shot heads in Redis.

Keys (all under one prefix, default ``fsj``):

- ``{prefix}:tenant:{id}``  hash: format, kind, labels (JSON), weight (float32 bytes, row-major
  [C, D]), bias (float32 bytes [C]), dim, fingerprint, prune (JSON), oos_threshold,
  example_counts (JSON), created, updated, version
- ``{prefix}:tenants``      set of tenant ids
- ``{prefix}:tenant-version`` counter; every write takes the next value as the tenant's version

A write replaces the whole hash in one Lua script, so readers never see half a head and two
concurrent writers leave exactly one of their versions. Never pickle: only JSON and raw floats.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import redis

from prune.heads.head import Head
from workers.connection import text
from workers.errors import CorruptTenant, FingerprintMismatch, InvalidName, UnknownTenant

FORMAT = "1"
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# Key names under a prefix: a prefix with one of them as a segment would reach into another
# prefix's keys (``fsj:job:J`` reads job J's pinned heads as tenants).
RESERVED_SEGMENTS = frozenset({"job", "tenant", "tenants", "tenant-version", "output"})

_PUT = """
local version = redis.call('INCR', KEYS[2])
local created = redis.call('HGET', KEYS[1], 'created') or ARGV[2]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HSET', KEYS[1], 'version', version, 'created', created, 'updated', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return version
"""


def validate_name(what: str, value: str) -> str:
    """A tenant id, job id or the like: the characters Redis keys and file names take."""
    if not isinstance(value, str) or not TENANT_ID.fullmatch(value):
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        length = len(value) if isinstance(value, str) else "n/a"
        raise InvalidName(
            f"invalid {what} {shown!r} (length {length}): use 1-64 characters from "
            f"A-Z a-z 0-9 _ . - starting with a letter or digit, e.g. 'acme' or 'acme-eu.2'"
        )
    return value


def validate_prefix(prefix: str) -> str:
    """A Redis key prefix: key characters only, and no segment that names this store's own keys."""
    if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix):
        shown = prefix if not isinstance(prefix, str) or len(prefix) <= 40 else prefix[:40] + "..."
        raise InvalidName(
            f"invalid key prefix {shown!r}: use 1-64 characters from A-Z a-z 0-9 _ . : - starting with a "
            "letter or digit, e.g. 'fsj' or 'team-a:fsj'"
        )
    reserved = sorted(set(prefix.split(":")) & RESERVED_SEGMENTS)
    if reserved:
        raise InvalidName(
            f"invalid key prefix {prefix!r}: {', '.join(reserved)} are key names of the store "
            f"({', '.join(sorted(RESERVED_SEGMENTS))}) and may not be a segment of a prefix"
        )
    return prefix


def validate_tenant_id(tenant: str) -> str:
    return validate_name("tenant id", tenant)


@dataclass(frozen=True)
class TenantRecord:
    tenant: str
    head: Head
    fingerprint: str
    prune: dict[str, object] | None
    example_counts: dict[str, int]
    created: str
    updated: str
    version: int
    fit: dict[str, object] = field(default_factory=dict)  # how the head was chosen: kind, CV accuracy, dtype

    def summary(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "version": self.version,
            "head": self.head.kind,
            "intents": len(self.head.labels),
            "examples": sum(self.example_counts.values()),
            "dim": self.head.dim,
            "fingerprint": self.fingerprint,
            "prune": self.prune,
            "oos_threshold": self.head.oos_threshold,
            "fit": self.fit,
            "created": self.created,
            "updated": self.updated,
        }


class CentroidStore:
    def __init__(self, client: redis.Redis, prefix: str = "fsj") -> None:
        if not PREFIX.fullmatch(prefix):  # the user's prefix is checked by validate_prefix; a job's pins live under it
            raise InvalidName(f"invalid key prefix {prefix!r}: use 1-64 characters from A-Z a-z 0-9 _ . : -")
        self.client = client
        self.prefix = prefix
        self._put = client.register_script(_PUT)

    def key(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{validate_tenant_id(tenant)}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:tenants"

    def put(
        self,
        tenant: str,
        head: Head,
        fingerprint: str,
        prune: dict[str, object] | None,
        example_counts: dict[str, int],
        fit: dict[str, object] | None = None,
    ) -> int:
        """Store (or replace) a tenant's head atomically; returns its new version."""
        key = self.key(tenant)
        fields: dict[str, bytes | str] = {
            "format": FORMAT,
            "kind": head.kind,
            "labels": json.dumps(list(head.labels)),
            "weight": np.ascontiguousarray(head.weight, dtype="<f4").tobytes(),
            "bias": np.ascontiguousarray(head.bias, dtype="<f4").tobytes(),
            "dim": str(head.dim),
            "fingerprint": fingerprint,
            "prune": json.dumps(prune),
            "oos_threshold": "" if head.oos_threshold is None else repr(float(head.oos_threshold)),
            "example_counts": json.dumps(example_counts, sort_keys=True),
            "fit": json.dumps(fit or {}, sort_keys=True),
        }
        flat: list[bytes | str] = [item for pair in fields.items() for item in pair]
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return int(self._put(keys=[key, f"{self.prefix}:tenant-version", self._index], args=[tenant, now, *flat]))

    def get(self, tenant: str, fingerprint: str | None = None) -> TenantRecord:
        """A tenant's head; with ``fingerprint``, refuse one built with another model."""
        raw = self.client.hgetall(self.key(tenant))
        if not raw:
            raise UnknownTenant(f"unknown tenant {tenant!r}: add it with `jobs tenants add {tenant} --examples FILE`")
        record = _decode(tenant, {text(k): v.encode() if isinstance(v, str) else v for k, v in raw.items()})
        if fingerprint is not None and record.fingerprint != fingerprint:
            raise FingerprintMismatch(
                f"tenant {tenant!r} (version {record.version}) was built with model fingerprint "
                f"{record.fingerprint}, but this encoder's model has fingerprint {fingerprint}; "
                f"rebuild the tenant with this model (`jobs tenants add {tenant} --examples FILE "
                f"--model DIR`) or run with the model it was built with"
            )
        return record

    def version(self, tenant: str) -> int | None:
        """The tenant's current version (cheap; for caches), or None if it does not exist."""
        v = self.client.hget(self.key(tenant), "version")
        return None if v is None else int(v)

    def tenants(self) -> list[str]:
        return sorted(text(t) for t in self.client.smembers(self._index))

    def pinned(self, job_id: str) -> CentroidStore:
        """The heads a job pinned when it was submitted (see ``pin``)."""
        return CentroidStore(self.client, f"{self.prefix}:job:{job_id}")

    def pin(self, job_id: str, tenants: list[str] | None = None) -> dict[str, int]:
        """Copy the current heads of ``tenants`` (default: every tenant) to the job's own keys, in
        Redis (COPY: no head crosses the network), so that one job labels with one head per
        tenant whatever happens to the tenants meanwhile. Returns the pinned versions."""
        names = self.tenants() if tenants is None else tenants
        target = self.pinned(job_id)
        stale = target.tenants()  # a pin of the same job id whose creation did not complete
        with self.client.pipeline(transaction=True) as pipe:
            if stale:
                pipe.delete(target._index, *(target.key(t) for t in stale))
            for t in names:
                pipe.copy(self.key(t), target.key(t), replace=True)
            if names:
                pipe.sadd(target._index, *names)
            pipe.execute()
        return {t: v for t in names if (v := target.version(t)) is not None}

    def unpin(self, job_id: str) -> None:
        """Delete the heads a job pinned."""
        target = self.pinned(job_id)
        self.client.delete(target._index, *(target.key(t) for t in target.tenants()))

    def remove(self, tenant: str) -> bool:
        """Delete a tenant; True if it existed."""
        key = self.key(tenant)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.srem(self._index, tenant)
            deleted, _ = pipe.execute()
        return bool(deleted)


def _decode(tenant: str, h: dict[str, bytes]) -> TenantRecord:
    def field(name: str) -> str:
        if name not in h:
            raise CorruptTenant(f"tenant {tenant!r}: stored head lacks field {name!r}")
        return h[name].decode()

    if field("format") != FORMAT:
        raise CorruptTenant(f"tenant {tenant!r}: stored format {field('format')!r}, this version reads {FORMAT!r}")
    labels = tuple(json.loads(field("labels")))
    dim = int(field("dim"))
    weight = np.frombuffer(h["weight"], dtype="<f4")
    bias = np.frombuffer(h["bias"], dtype="<f4")
    if weight.size != len(labels) * dim or bias.size != len(labels):
        raise CorruptTenant(
            f"tenant {tenant!r}: {len(labels)} labels x dim {dim} but {weight.size} weights, {bias.size} biases"
        )
    threshold = field("oos_threshold")
    head = Head(
        labels,
        weight.reshape(len(labels), dim).astype(np.float32),
        bias.astype(np.float32),
        float(threshold) if threshold else None,
        field("kind"),  # type: ignore[arg-type]  # a str from Redis; Head checks it is a known kind
    )
    return TenantRecord(
        tenant=tenant,
        head=head,
        fingerprint=field("fingerprint"),
        prune=json.loads(field("prune")),
        example_counts=json.loads(field("example_counts")),
        created=field("created"),
        updated=field("updated"),
        version=int(field("version")),
        fit=json.loads(h["fit"]) if "fit" in h else {},
    )
