"""Column types' one-step conversions on SQLite write and read exactly what SQLAlchemy's
own two steps (our type's, then SQLite DATETIME's) did: rows stored before them and after
them are alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from domain.eventstore.tables import UTCDateTime

DIALECT = sqlite.dialect()
TIMES = [
    datetime(2026, 12, 1, 21, 40, 24, 112353, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),  # no microseconds: still written with six digits
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
]


def two_steps() -> tuple[sa.types.TypeDecorator[datetime], sa.types.TypeEngine[datetime]]:
    return UTCDateTime(), sa.DateTime(timezone=True).dialect_impl(DIALECT)


def test_a_time_is_written_as_sqlalchemys_sqlite_datetime_text_in_utc() -> None:
    ours, inner = two_steps()
    write = ours.dialect_impl(DIALECT).bind_processor(DIALECT)
    write_inner = inner.bind_processor(DIALECT)
    assert write is not None
    assert write_inner is not None
    for at in TIMES:
        assert write(at) == write_inner(ours.process_bind_param(at, DIALECT))
    assert write(None) is None
    with pytest.raises(ValueError, match="naive"):
        write(datetime(2026, 1, 1))


def test_a_stored_time_reads_back_as_the_same_utc_instant() -> None:
    ours, inner = two_steps()
    write = ours.dialect_impl(DIALECT).bind_processor(DIALECT)
    read = ours.dialect_impl(DIALECT).result_processor(DIALECT, None)
    read_inner = inner.result_processor(DIALECT, None)
    assert write is not None
    assert read is not None
    assert read_inner is not None
    for at in TIMES:
        text = write(at)
        back = read(text)
        assert back == at
        assert back.tzinfo is UTC
        assert back == ours.process_result_value(read_inner(text), DIALECT)
    # Text written by SQL (CURRENT_TIMESTAMP) has no fraction.
    assert read("2026-12-01 21:40:24") == datetime(2026, 12, 1, 21, 40, 24, tzinfo=UTC)
    # Text with an offset of its own (not ours) is read as that instant.
    assert read("2026-12-01 23:40:24+02:00") == datetime(2026, 12, 1, 21, 40, 24, tzinfo=UTC)
    assert read(None) is None
