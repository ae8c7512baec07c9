"""The workers' exceptions: Redis, tenants' heads, input files read by the actors."""

from prune.errors import BadInput


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached, or refused our credentials."""


class InvalidName(BadInput):
    """A tenant id, key prefix or Redis URL that is not allowed."""


class UnknownTenant(BadInput, KeyError):
    """No head is stored for this tenant."""

    def __str__(self) -> str:
        return str(self.args[0])


class FingerprintMismatch(BadInput):
    """A tenant's head was built with another model than the encoder that wants to use it."""


class CorruptTenant(BadInput):
    """A stored head does not decode (wrong sizes, unknown format)."""
