"""Progress bars that show on a terminal and stay quiet in logs and pipes unless asked.

Every long loop of the library draws its bar with :func:`progress_bar`, so one rule decides
whether a bar appears: ``progress=None`` (every default) shows it only when ``sys.stderr``
is a terminal, ``True`` always shows it and ``False`` never does. A script whose stderr goes
to a log file or a pipe therefore gets no carriage-return updates unless it asks for them.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["DELAY", "check_progress", "progress_bar", "stderr_is_terminal"]

#: Seconds a bar waits before it first draws when ``progress`` is None, so that loops that
#: finish sooner leave a terminal untouched.
DELAY = 1.0


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is an interactive terminal (False when it is missing or closed)."""
    isatty = getattr(sys.stderr, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except ValueError:  # a closed stream
        return False


def check_progress(progress: Any) -> bool | None:
    """``progress`` if it is None, True or False; else raise TypeError naming it."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"`progress` must be None, True or False; got {progress!r}.")
    return progress


def progress_bar(total: int, desc: str, progress: bool | None = None, initial: int = 0) -> Any:
    """A tqdm bar on stderr over ``total`` steps, labelled ``desc``, that leaves no trace.

    Parameters
    ----------
    total : int
        Number of steps the caller will report with ``bar.update``.
    desc : str
        The bar's label.
    progress : bool or None, default=None
        True: shown at once; False: hidden; None: shown only when ``sys.stderr`` is a
        terminal, and only once the loop has run for :data:`DELAY` seconds. In a notebook,
        whose stderr is not a terminal, pass True.
    initial : int, default=0
        Steps already done (a resumed run).

    Returns
    -------
    tqdm.tqdm
        A context manager; a hidden bar accepts the same calls and writes nothing.

    Examples
    --------
    >>> with progress_bar(3, "steps", progress=False) as bar:
    ...     for _ in range(3):
    ...         _ = bar.update(1)
    >>> bar.disable
    True
    """
    from tqdm.auto import tqdm

    show = stderr_is_terminal() if progress is None else bool(progress)
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        disable=not show,
        delay=DELAY if progress is None else 0.0,
        leave=False,
    )
