"""The exception type for user mistakes (bad config, missing data, ...).

`jaxquant.main` turns a `UserError` into a one-paragraph message and a
non-zero exit, without a traceback; any other exception is a bug and keeps
its traceback.
"""


class UserError(ValueError):
    """A mistake the user can fix; the message names the bad value and the fix."""


class ConfigError(UserError):
    """An invalid config value or override."""
