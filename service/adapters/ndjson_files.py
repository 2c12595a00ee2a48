"""Local NDJSON files for `refracture import`: found in folders, read from a byte offset, told apart by fingerprint."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

__all__ = ["LocalNdjsonFile", "find_ndjson_files"]

SUFFIXES: Final = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
_CHUNK: Final = 1024 * 1024
_FINGERPRINT_BYTES: Final = 64 * 1024


def find_ndjson_files(paths: Sequence[Path]) -> list[Path]:
    """The files named, and the NDJSON files (by suffix) in the folders named, each folder's in name order.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


class LocalNdjsonFile:
    """One local file (gzip when it ends in .gz; its offsets are then those of the uncompressed text)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._key = str(path.resolve())
        self._fingerprint = _fingerprint(path)

    @property
    def name(self) -> str:
        """The path as given."""
        return str(self._path)

    @property
    def key(self) -> str:
        """The absolute path."""
        return self._key

    @property
    def fingerprint(self) -> str:
        """Size and the first 64 KiB's sha256: another file copied to the same path is read from its start."""
        return self._fingerprint

    def chunks(self, offset: int) -> Iterator[bytes]:
        """The file's bytes from ``offset`` on."""
        with self._open() as handle:
            handle.seek(offset)
            while chunk := handle.read(_CHUNK):
                yield chunk

    def _open(self) -> BinaryIO:
        if self._path.name.endswith(".gz"):
            return gzip.open(self._path, "rb")  # type: ignore[return-value]
        return self._path.open("rb")


def _fingerprint(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(_FINGERPRINT_BYTES)
    return f"{path.stat().st_size}:{hashlib.sha256(head).hexdigest()}"
