"""NDJSON line splitting for bulk import: byte offsets exact across chunk boundaries, long lines never held."""

from __future__ import annotations

from service.usecases.bulk_import import split_lines


def lines(chunks: list[bytes], offset: int = 0, max_line: int = 100) -> list[tuple[bytes | None, int]]:
    return list(split_lines(chunks, offset, max_line))


def test_offsets_point_past_each_newline_whatever_the_chunks() -> None:
    text = b'{"a":1}\n\n{"b":2}\n{"c":3}'
    expected = [(b'{"a":1}', 8), (b"", 9), (b'{"b":2}', 17), (b'{"c":3}', 24)]
    assert lines([text]) == expected
    assert lines([text[i : i + 1] for i in range(len(text))]) == expected
    assert lines([text[:5], text[5:12], text[12:]]) == expected


def test_reading_from_a_checkpoint_counts_from_its_offset() -> None:
    assert lines([b"x\ny\n"], offset=100) == [(b"x", 102), (b"y", 104)]


def test_a_line_longer_than_the_limit_is_yielded_as_none_and_skipped_to_its_end() -> None:
    long = b"z" * 50
    assert lines([b"ok\n", long[:30], long[30:] + b"\nok\n"], max_line=20) == [(b"ok", 3), (None, 54), (b"ok", 57)]
    assert lines([long], max_line=20) == [(None, 50)]
