"""The model side's exceptions. ``BadInput`` is the base of every error a user can fix (a bad
option, model folder or data file): the CLI maps it, and only it, to exit 2. Anything else that
escapes is a bug and shows its traceback."""


class BadInput(ValueError):
    """Input that cannot be used as given; the message says what was expected, what was found,
    and how to fix it."""


class ModelError(BadInput):
    """The model directory is missing, incomplete or of an unsupported kind."""


class ConfigError(BadInput):
    """An encoder, pruning, eval or tune setting out of range or unknown."""


class DataError(BadInput):
    """A dataset folder or split that is missing or malformed."""


class Int8Unavailable(ConfigError):
    """int8 cannot run here: a graph it needs is neither built nor buildable (no C++ compiler), or
    torchao is missing. The message names the missing piece."""
