"""The library's errors: what a caller can fix (bad input) apart from a model that cannot be used.

Every deliberate failure of the library is a ``KalleError``; the console scripts map the two families to their exit
codes (``InputError`` 2, ``ModelError`` 3) and servers to their error replies, without parsing messages. Each class
also derives from the built-in exception that code written before it caught (ValueError, KeyError,
FileNotFoundError), so those ``except`` clauses keep working.
"""

from __future__ import annotations


class KalleError(Exception):
    """A deliberate failure of espnet-kalle (not a bug); its message is one line meant for the user."""

    exit_code = 1

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InputError(KalleError, ValueError):
    """Bad input the caller can fix: text, voice, prompt, audio, an option or an output path."""

    exit_code = 2


class UnknownVoiceError(InputError, KeyError):
    """A voice name that is neither a preset nor a voice file."""


class ModelError(KalleError):
    """A model that cannot be used: missing, or present but incomplete, malformed or unreadable."""

    exit_code = 3


class ModelNotFound(ModelError, FileNotFoundError):
    """No model at the name or path given (or a file the model dir names is missing)."""


class ModelInvalid(ModelError, ValueError):
    """A model dir whose model.yaml, configs or weights cannot be read or do not fit together."""
