"""One exception type per domain, raised with a message a user can act on.

They are caught nowhere but at the edge that reports them (a workflow script or the CLI),
so a message must name the file or key, what was expected, what was found, and the fix.
"""


class VadbenchError(Exception):
    """Base class of every error vadbench raises on purpose."""


class ConfigError(VadbenchError):
    """A configuration value is missing, malformed or inconsistent."""


class DatasetError(VadbenchError):
    """Source data is missing, corrupt or not in the expected layout."""
