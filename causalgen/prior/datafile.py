"""Reading a user's data file: the treatment, outcome and covariate columns of a CSV table.

Shared by ``cina estimate`` and ``causalgen coverage``. Robust to what real files look like:
gzip (recognised by its magic bytes), a UTF-8 BOM, UTF-16, Latin-1 when the bytes are not
UTF-8 (said in a note), the delimiters `DELIMITERS` (sniffed), blank lines, and ``-`` for
stdin. Every problem is a `DataFileError` that names the file, the column and the row.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["DELIMITERS", "DataFileError", "read_csv_columns"]


class DataFileError(ValueError):
    """A data file cannot be read as asked; the message (one line) names the file, column, row."""


#: delimiters `read_csv_columns` recognises, in order of preference on a tie
DELIMITERS = (",", "\t", ";", "|")


def _read_bytes(path: str) -> tuple[bytes, str]:
    """(raw bytes, the name errors use) of a file, or of stdin for ``-``."""
    if path == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"{path}: no such file")
    return p.read_bytes(), path


def decode_table(raw: bytes, name: str) -> tuple[str, list[str]]:
    """(text, notes) of a table file's bytes: gzip (by its magic bytes, whatever the name)
    decompressed; UTF-8 with or without a BOM, UTF-16 with a BOM, else Latin-1 (with a note
    saying where UTF-8 failed). Refuses binary data (a NUL byte) naming the byte offset."""
    import codecs
    import gzip
    import zlib

    notes: list[str] = []
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError(f"{name}: not a valid gzip file ({exc})") from None
    elif name.endswith(".gz"):
        raise DataFileError(f"{name}: not a valid gzip file (no gzip header)")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), notes
        except UnicodeDecodeError as exc:
            raise DataFileError(f"{name}: not valid UTF-16 at byte offset {exc.start}") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataFileError(f"{name}: not a text file (a NUL byte at byte offset {nul}); give a CSV/TSV file, "
                         "plain or gzip-compressed")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8"), notes
    except UnicodeDecodeError as exc:
        notes.append(f"{name}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte offset {exc.start}); read as Latin-1")
        return raw.decode("latin-1"), notes


def sniff_delimiter(text: str) -> str:
    """The delimiter among `DELIMITERS` that splits the first lines into the most fields, the
    same number on every line (quotes respected); ',' when none splits them."""
    import csv
    import io

    head = text[: 1 << 16].splitlines()[:50]
    if len(text) > 1 << 16 and len(head) > 1:
        head = head[:-1]  # possibly cut off
    lines = [ln for ln in head if ln.strip()]
    best, best_fields = ",", 1
    for d in DELIMITERS:
        counts = {len(r) for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=d)}
        if len(counts) == 1 and (k := counts.pop()) > best_fields:
            best, best_fields = d, k
    return best


def read_csv_columns(path: str, treatment: str, outcome: str, covariates: list[str] | None):
    """(x (N, d) float64, t (N,) float64, y (N,) float64, covariate names, notes) from a table
    file, with an `DataFileError` naming the file, column and row for every problem.

    ``path`` is a file or ``-`` for stdin; gzip, a UTF-8 BOM, UTF-16, Latin-1 (if not UTF-8)
    and the delimiters `DELIMITERS` are recognised (`decode_table`, `sniff_delimiter`); blank
    lines are skipped, and so are rows whose every field is empty (said in ``notes``); rows are numbered as lines of the file (the header is row 1). The values
    stay float64: the estimator standardises them in float64 (covariates in any unit).
    ``notes`` lists what was assumed (e.g. the Latin-1 fallback).
    """
    import csv
    import io
    import re

    import numpy as np

    raw, name = _read_bytes(path)
    text, notes = decode_table(raw, name)
    if not text.strip():
        raise DataFileError(f"{name}: the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    try:
        header = next(r for r in reader if r)
        rows, lines, empty = [], [], []
        for row in reader:
            if row and any(c.strip() for c in row):
                rows.append(row)
                lines.append(reader.line_num)
            elif len(row) > 1:  # delimiters and nothing else: a record whose every field is missing
                empty.append(reader.line_num)
    except csv.Error as exc:
        raise DataFileError(f"{name}: row {reader.line_num}: malformed CSV ({exc})") from None
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        notes.append(f"{name}: row{'s' if len(empty) > 1 else ''} {shown} had every field empty and "
                     f"{'were' if len(empty) > 1 else 'was'} skipped")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataFileError(f"{name}: duplicate column names {dup}")
    for role, col in (("treatment", treatment), ("outcome", outcome)):
        if col not in header:
            raise DataFileError(f"{name}: {role} column {col!r} not found (columns: {', '.join(header)})")
    if treatment == outcome:
        raise DataFileError(f"{name}: the treatment and outcome columns are the same ({treatment!r})")
    if covariates:
        missing = [c for c in covariates if c not in header]
        if missing:
            raise DataFileError(f"{name}: covariate column {missing[0]!r} not found (columns: {', '.join(header)})")
        for role, col in (("treatment", treatment), ("outcome", outcome)):
            if col in covariates:
                raise DataFileError(f"{name}: {col!r} is the {role} column and cannot also be a covariate")
    else:
        covariates = [c for c in header if c not in (treatment, outcome)]
    if not covariates:
        raise DataFileError(f"{name}: no covariate columns (give --covariates or add columns)")
    if not rows:
        raise DataFileError(f"{name}: no data rows (only a header)")
    index = {c: i for i, c in enumerate(header)}
    wanted = [treatment, outcome, *covariates]
    data = np.empty((len(rows), len(wanted)), dtype=np.float64)
    for r, (row, line) in enumerate(zip(rows, lines)):
        if len(row) != len(header):
            raise DataFileError(f"{name}: row {line} has {len(row)} fields, the header has {len(header)}")
        for k, col in enumerate(wanted):
            cell = row[index[col]].strip()
            if not cell:
                raise DataFileError(f"{name}: column {col!r}, row {line}: missing value")
            try:
                data[r, k] = float(cell)
            except ValueError:
                hint = " (a decimal comma? write 0.5)" if re.fullmatch(r"[-+]?\d*,\d+", cell) else ""
                raise DataFileError(f"{name}: column {col!r}, row {line}: {cell!r} is not a number{hint}") from None
    bad = ~np.isfinite(data)
    if bad.any():
        r, k = np.argwhere(bad)[0]
        raise DataFileError(f"{name}: column {wanted[k]!r}, row {lines[r]}: missing or non-finite value ({rows[r][index[wanted[k]]]!r})")
    t, y, x = data[:, 0], data[:, 1], data[:, 2:]
    if not np.isin(t, (0.0, 1.0)).all():
        vals = sorted(set(np.unique(t).tolist()) - {0.0, 1.0})[:3]
        raise DataFileError(f"{name}: treatment column {treatment!r} must be binary 0/1, found {vals}")
    if len(t) < 10:
        raise DataFileError(f"{name}: only {len(t)} units; at least 10 are needed")
    n_treated = int(t.sum())
    if n_treated == 0 or n_treated == len(t):
        raise DataFileError(f"{name}: treatment column {treatment!r} has an empty arm ({n_treated} treated of {len(t)})")
    return x, t, y, covariates, notes
