"""Work functions that kill their own process on one item, for the worker-crash tests.

It stands in for an image decoder crashing on a hostile file, which no real file reliably does;
it lives in a module of its own so a fresh worker imports nothing else to run it.
"""

import os
import signal
from pathlib import Path

FATAL = 13


def double(value: int) -> int:
    """Twice `value`; the process dies on `FATAL`."""
    if value == FATAL:
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * value


def read_or_die(path: Path) -> bytes:
    """The file's bytes; the process dies on a file named `fatal.jpg`."""
    if path.name == "fatal.jpg":
        os.kill(os.getpid(), signal.SIGKILL)
    return path.read_bytes()
