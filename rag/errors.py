"""Errors that carry one clear, actionable sentence for the user (never a traceback), and the exit statuses
the command lines (``studybot``, ``studybot eval``) end with."""

# The exit statuses of every command: done; ran, but something it checked failed (an ingest with a failed file,
# a doctor check); an error (one sentence on stderr). Defined once here, imported by ui.commands and evals.cli.
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class StudybotError(Exception):
    """Base class: ``str(err)`` is what the user sees."""


class ModelError(StudybotError):
    """A model file or package is missing, corrupt or unusable."""


class IndexStateError(StudybotError):
    """The index is missing, empty or broken."""


class QueryError(StudybotError):
    """The question is empty, too long or otherwise unusable."""


class BackendError(StudybotError):
    """The LLM backend (local or server) failed or cannot be reached."""


class BackendUnreachableError(BackendError):
    """The model server cannot be reached at all (down, crashed, wrong URL): every later call fails too."""


class IngestError(StudybotError):
    """A file could not be ingested (the reason is one line)."""


class SettingsError(StudybotError):
    """A setting (an environment variable ``STUDYBOT_<GROUP>_<NAME>`` or a value given in code) is not valid."""


class StudyDatabaseError(StudybotError):
    """The study database (reviews, card schedules, saved conversations) is damaged, busy or unreadable; the
    sentence names the file and the fix (usually `studybot doctor --fix`, which restores its newest backup)."""


class HomeNotWritableError(StudybotError):
    """A folder or file studybot must write (its home, the index, the uploads) is not writable by the user it
    runs as: a permissions problem, not a broken index, so a rebuild cannot help; the sentence names the path
    and the user. Not an :class:`IndexStateError`, so nothing treats it as "rebuild the index"."""
