"""Connecting to Redis from a URL, with errors that say what to do and never show a password."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import redis

from workers.errors import InvalidName, RedisUnavailable

SCHEMES = ("redis", "rediss", "unix")


# user:PASSWORD@ in a URL (the password may hold / : @, unescaped: up to the token's last @), and
# secret query parameters (a password, or the keys of an object store's URI)
_USERINFO = re.compile(r"(://[^:/@\s'\"]*:)[^\s'\"]*@")
_SECRET_PARAMS = re.compile(r"([?&](?:password|secret_key|access_key|session_token)=)[^&\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) with every password and secret key replaced by ****."""
    return _SECRET_PARAMS.sub(r"\1****", _USERINFO.sub(r"\1****@", text))


def connect(url: str, timeout: float = 5.0) -> redis.Redis:
    """A client for ``url`` (redis://, rediss://, unix://), checked with a PING."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise InvalidName(
            f"Redis URL {redact(url)!r} has scheme {scheme!r}; expected one of "
            f"{', '.join(s + '://' for s in SCHEMES)} (e.g. redis://:PASSWORD@host:6379/0)"
        )
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
        )
        client.ping()
    except redis.AuthenticationError as exc:
        if "required" in str(exc).lower():
            raise RedisUnavailable(
                f"Redis at {redact(url)} requires a password ({_reason(exc)}); "
                f"give it in the URL: redis://:PASSWORD@host:port/0"
            ) from None
        raise RedisUnavailable(
            f"Redis at {redact(url)} refused the credentials ({_reason(exc)}); "
            f"check the password in --redis-url / JOBS_REDIS_URL"
        ) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise RedisUnavailable(
                f"Redis at {redact(url)} requires a password ({_reason(exc)}); "
                f"give it in the URL: redis://:PASSWORD@host:port/0"
            ) from None
        raise
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(
            f"cannot reach Redis at {redact(url)} ({_reason(exc)}); check that the server runs "
            f"and --redis-url / JOBS_REDIS_URL, or omit both to use the embedded server"
        ) from None
    return client


def _reason(exc: BaseException) -> str:
    return redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__


def text(value: bytes | str) -> str:
    """A Redis reply as text: our clients leave replies as bytes (decode_responses off), which
    redis-py types as bytes or str."""
    return value.decode() if isinstance(value, bytes) else value
