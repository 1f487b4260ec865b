"""Typed errors. The library raises these; only `cli.py` turns them into exit codes.

    HedgerowError                 a user can fix it; the message says how (exit 1)
    ├── InputError                a seed file or dataset that cannot be read as seeds
    ├── TemplateError             a prompt template or phrase bank that does not load or render
    ├── ConfigError               flags or settings that do not fit together
    │   └── NotAvailableError     a flag for a feature this version does not have yet
    ├── RunFolderError            an output folder that cannot be used for this run
    ├── ScorerError               a fit scorer that cannot be loaded, reached or used
    ├── EndpointError             a generation endpoint that answered none of the requests
    └── JSONValueError            a value strict JSON cannot hold (NaN) on its way to a file

Every message is one line and names the file, line or field it is about.
"""


class HedgerowError(Exception):
    """Base of every error a user can fix."""


class InputError(HedgerowError):
    """A seed file or dataset that cannot be read as seeds."""


class TemplateError(HedgerowError):
    """A template or phrase bank that does not load or render."""


class ConfigError(HedgerowError):
    """Flags or settings that do not fit together."""


class NotAvailableError(ConfigError):
    """A feature that is planned but not in this version."""


class RunFolderError(HedgerowError):
    """An output folder that cannot be used for this run."""


class ScorerError(HedgerowError):
    """A fit scorer that cannot be loaded, reached or used."""


class EndpointError(HedgerowError):
    """A generation endpoint that answered none of a run's requests (the run is kept)."""


class JSONValueError(HedgerowError, ValueError):
    """A value strict JSON cannot hold (NaN, infinity) on its way into a file."""
