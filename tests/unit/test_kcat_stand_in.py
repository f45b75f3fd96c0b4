"""docs/tools/kcat.py, the kcat stand-in of the integrators' guide: kcat's command line and output
format without a broker (tests/integration/test_kcat_guide.py runs it against the real one)."""

from __future__ import annotations

import importlib.util
import io
import re
import shlex
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import confluent_kafka as ck
import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kcat_stand_in", REPO / "docs/tools/kcat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


kcat = _load()


def test_the_documented_confluent_kafka_pin_is_the_project_s() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(d for d in deps if d.startswith("confluent-kafka=="))
    for path in ("docs/integrators.md", "docs/tools/kcat.py"):
        mentioned = set(re.findall(r"confluent-kafka==[\d.]+", (REPO / path).read_text()))
        assert mentioned == {pinned}, path
    # and the pinned wheel brings a librdkafka whose SCRAM works with Kafka 4
    assert ck.libversion()[1] >= kcat.FIRST_LIBRDKAFKA_THAT_LOGS_IN


def test_the_guide_s_flags_are_read_as_kcat_reads_them() -> None:
    o = kcat.parse_args(
        shlex.split(
            "-P -b 127.0.0.1:19092 -X security.protocol=SASL_PLAINTEXT -X sasl.password=a=b "
            "-t agency.x.listings.v1 -k key-1 -H ce_id=1 -H flag -z none -K: -Z file.json"
        )
    )
    assert o.mode == "P"
    assert o.config == {
        "bootstrap.servers": "127.0.0.1:19092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.password": "a=b",
        "compression.codec": "none",
    }
    assert (o.topic, o.key, o.key_delimiter, o.null) == (
        "agency.x.listings.v1",
        b"key-1",
        b":",
        True,
    )
    assert o.headers == [("ce_id", b"1"), ("flag", None)]
    assert o.files == ["file.json"]
    c = kcat.parse_args(shlex.split("-C -b b -t t -o beginning -e -c 3 -f %s"))
    assert (c.offset, c.exit_at_end, c.count, c.format) == (ck.OFFSET_BEGINNING, True, 3, "%s")
    assert kcat.parse_args(shlex.split("-C -b b -t t")).offset == ck.OFFSET_END  # kcat's default


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ("-C -b b -t t -G group", "-G"),  # a flag the guide does not use
        ("-P -t t", "-b"),
        ("-P -b b", "-t"),
        ("-P -b b -t t -X sasl.username", "key=value"),
        ("-C -b b -t t -o -10", "-o"),
        ("-C -b b -t t file.json", "unexpected"),
    ],
)
def test_anything_else_is_refused_with_a_reason(argv: str, complaint: str) -> None:
    with pytest.raises(kcat.UsageError, match=complaint):
        kcat.parse_args(shlex.split(argv))


def test_stdin_lines_with_a_key_delimiter_and_null_make_a_tombstone() -> None:
    o = kcat.parse_args(["-P", "-b", "b", "-t", "t", "-K:", "-Z", "-k", "fixed"])
    stdin = io.BytesIO(b"jamm-dakar-pss:\n\nk2:v:2\nno delimiter\n:v3\nlast:without-newline")
    assert list(kcat.messages(o, stdin)) == [
        (b"jamm-dakar-pss", None),
        (b"k2", b"v:2"),
        (b"fixed", b"no delimiter"),
        (None, b"v3"),
        (b"last", b"without-newline"),
    ]
    without_z = kcat.parse_args(["-P", "-b", "b", "-t", "t", "-K:"])
    assert list(kcat.messages(without_z, io.BytesIO(b"k:\n"))) == [(b"k", b"")]


def test_each_file_is_one_message_and_an_empty_one_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b'{"a":\n1}\n')
    (tmp_path / "empty.json").write_bytes(b"")
    o = kcat.parse_args(
        [
            "-P",
            "-b",
            "b",
            "-t",
            "t",
            "-k",
            "K",
            str(tmp_path / "a.json"),
            str(tmp_path / "empty.json"),
        ]
    )
    assert list(kcat.messages(o, io.BytesIO(b"ignored\n"))) == [(b"K", b'{"a":\n1}\n')]


def message(**fields: object) -> ck.Message:
    base: dict[str, object] = {"topic": "agency.x.inbox.v1", "partition": 2, "offset": 41}
    return ck.Message(**(base | fields))  # type: ignore[arg-type]


def test_the_format_prints_what_kcat_prints() -> None:
    o = kcat.parse_args(["-C", "-b", "b", "-t", "t", "-f", r"headers=%h\nkey=%k\n%s\n\n"])
    m = message(key=b"r-1", value=b'{"a":1}', headers=[("ce_id", b"1"), ("x", None), ("e", b"")])
    assert kcat.formatter(o)(m) == b'headers=ce_id=1,x=NULL,e=\nkey=r-1\n{"a":1}\n\n'
    where = kcat.parse_args(["-C", "-b", "b", "-t", "t", "-f", r"%t [%p] @%o\t100%%\x41"])
    assert kcat.formatter(where)(m) == b"agency.x.inbox.v1 [2] @41\t100%A"


def test_null_and_empty_print_as_nothing_or_as_null_with_z() -> None:
    tombstone = message(key=b"k", value=None, headers=None)
    plain = kcat.parse_args(["-C", "-b", "b", "-t", "t", "-K", "|"])
    assert kcat.formatter(plain)(tombstone) == b"k|\n"  # kcat's default with -K
    nulls = kcat.parse_args(["-C", "-b", "b", "-t", "t", "-Z", "-f", "%k=%s;%h"])
    assert kcat.formatter(nulls)(tombstone) == b"k=NULL;"
    assert kcat.formatter(nulls)(message(key=b"", value=b"")) == b"NULL=NULL;"


def test_an_unknown_formatter_is_refused() -> None:
    o = kcat.parse_args(["-C", "-b", "b", "-t", "t", "-f", "%s %J"])
    with pytest.raises(kcat.UsageError, match="%J"):
        kcat.formatter(o)
