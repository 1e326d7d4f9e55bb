"""Tests for the progress bars of long loops (ratiokit/_progress.py)."""

import io
import sys
import time

import pytest

from ratiokit._progress import progress_bar, stderr_is_terminal


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True


def _run(progress, steps=3, pause=0.0):
    with progress_bar(steps, "loop", progress) as bar:
        for _ in range(steps):
            time.sleep(pause)
            bar.update(1)


@pytest.mark.parametrize("progress", [None, False])
def test_a_pipe_or_log_gets_no_carriage_returns(monkeypatch, progress):
    # A file stands for a log or a pipe: not a terminal, so the default draws nothing, even
    # for a loop that outlasts the bar's 1 s delay.
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert not stderr_is_terminal()
    _run(progress, steps=2, pause=0.6)
    assert log.getvalue() == ""


def test_true_draws_the_bar_anywhere(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    _run(True)
    assert "loop" in log.getvalue() and "\r" in log.getvalue()


def test_a_terminal_gets_the_bar_of_a_slow_loop_only(monkeypatch):
    # progress=None on a terminal: a loop of 1.2 s outlasts the 1 s delay and is drawn; a
    # loop of a few microseconds is not.
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert stderr_is_terminal()
    _run(None)
    assert term.getvalue() == ""
    _run(None, steps=2, pause=0.6)
    assert "loop" in term.getvalue()


def test_false_hides_the_bar_on_a_terminal(monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    _run(False, steps=2, pause=0.6)
    assert term.getvalue() == ""


@pytest.mark.parametrize("stream", [None, "closed"])
def test_a_missing_or_closed_stderr_is_not_a_terminal(monkeypatch, stream):
    if stream == "closed":  # isatty() of a closed stream raises ValueError
        stream = io.StringIO()
        stream.close()
    monkeypatch.setattr(sys, "stderr", stream)
    assert not stderr_is_terminal()
