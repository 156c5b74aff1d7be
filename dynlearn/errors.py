"""Errors raised by dynlearn.

Every error says what went wrong in the user's terms (which model, which layer, which time) so that
a failed relaxation or a badly shaped input never turns into silent NaNs further down.
"""


class DynlearnError(Exception):
    """Base class of all errors raised by dynlearn."""


class ShapeError(DynlearnError, ValueError):
    """An input, target or weight has the wrong shape for the network it is given to."""


class NonFiniteError(DynlearnError, ValueError):
    """Data or a state contains NaN or inf."""


class NotConvergedError(DynlearnError, RuntimeError):
    """A relaxation did not reach its steady state within the allowed time or steps."""


class DivergedError(DynlearnError, RuntimeError):
    """A trajectory left every bounded region (or produced NaN/inf) during integration."""


class UnknownNameError(DynlearnError, KeyError):
    """A model, rule, check or figure name that dynlearn does not know."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(DynlearnError, ValueError):
    """An argument or configuration value outside its allowed range (the message names it and the range)."""


class OutputPathError(ConfigError):
    """An output path that cannot be written: a file where a folder is needed, or a folder without write permission."""


#: errors that mean the command was used wrongly (exit code 2 in the CLI); every other DynlearnError is a runtime error (1)
USAGE_ERRORS = (ConfigError, UnknownNameError, ShapeError, NonFiniteError)
