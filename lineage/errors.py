"""The base of every error a user can cause: a refusal with a one-line message, never a bug.

Each module keeps its own class (LedgerError, RegistryError, ...); they all subclass LineageError, so the CLI
and the other front ends catch exactly these and let anything else (a bug) surface as a traceback.
"""


class LineageError(Exception):
    """Something the user asked for cannot be done; the message says why in one line."""
