"""Errors that reach a person: each says what was wrong and what to do next."""

from __future__ import annotations


class Llm4tagError(Exception):
    """Base class for every error llm4tag reports to its user instead of a traceback."""


class InputError(Llm4tagError, ValueError):
    """The content or argument given is unusable (empty text, unknown tag, bad option)."""


class UnknownTagsError(InputError):
    """Tags named that are not in the tag repository; ``tags`` lists them."""

    def __init__(self, message: str, tags: list[str]):
        super().__init__(message)
        self.tags = list(tags)


class NoReviewWaitingError(InputError):
    """A review decision for a content whose review is not (or no longer) waiting."""


class TooManyReviewsError(InputError):
    """A review was asked for while the knowledge base's ``max_reviews`` reviews already wait."""


class ConflictError(InputError):
    """A write would silently replace something else already stored under the same id; ``id`` names it."""

    def __init__(self, message: str, id: str):
        super().__init__(message)
        self.id = id


class LoadError(Llm4tagError):
    """A file could not be loaded; nothing from it was written to the knowledge base."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = path or ""
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = message  # the message without the file and line
        self.path = path
        self.line = line


class KnowledgeBaseError(Llm4tagError):
    """The knowledge base directory is missing, locked, or was built with another encoder."""


class KnowledgeBaseReadOnlyError(KnowledgeBaseError):
    """The knowledge base's folder (or its parent, when creating one) cannot be written."""


class DiskFullError(KnowledgeBaseError):
    """A write stopped because the disk (or the user's quota) is full."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it came from) says the disk is full: ``OSError`` ENOSPC or
    EDQUOT, or SQLite's "database or disk is full" as Chroma passes it on."""
    import errno

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "disk is full" in text or "no space left on device" in text or "disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
