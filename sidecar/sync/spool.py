"""The spool directory: attachments in transfer live there as 0600 files for the length of one transfer.

Both directions write into it (`.attach-out-*`: a decrypted file being uploaded; `.attach-in-*.part`: a
sealed file being stored). Every such file belongs to a transfer of the running process, so whatever is
there when the process starts was left by one that was killed, and is removed before any transfer begins:
a decrypted leftover must not outlive its upload, and a sealed one would only fill the disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
OUTBOUND_PREFIX = ".attach-out-"
INBOUND_PREFIX = ".attach-in-"
_PREFIXES = (OUTBOUND_PREFIX, INBOUND_PREFIX)


def clear_leftovers(directory: Path) -> int:
    """Remove the transfer files a killed process left in `directory` (only those: nothing else there is
    touched); the number removed."""
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(directory):
            if entry.name.startswith(_PREFIXES) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    if removed:
        log.info("removed %d attachment spool file(s) left by an earlier process", removed)
    return removed
