"""The project's own error types.

Every mistake a user can make (a missing data file, an unknown model name, a bad config value)
raises a subclass of `MnistDigitsError` whose message says what went wrong and what to do. The CLI
prints that message on one line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class MnistDigitsError(Exception):
    """Base class for errors caused by input the user can fix."""


class DataError(MnistDigitsError, ValueError):
    """The MNIST files are missing, corrupt or not valid IDX."""


class ConfigError(MnistDigitsError, ValueError):
    """A configuration value, model name or model option is invalid."""


class RunError(MnistDigitsError):
    """A run folder is missing, incomplete or cannot be written."""
