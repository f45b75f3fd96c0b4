"""Replay a service's dead letters to their original topics, once the cause is fixed.

A dead letter (``shared/kafka/dead_letters.py``) keeps the original record's key, value and
headers byte for byte and adds ``dlq_*`` headers: the error and where the record came from.
Replaying sends the original back where it came from — same topic, same partition, same key,
value and headers (the ``dlq_*`` ones removed), so the same ``ce_id`` — and the service's consumer
processes it like any record. Its inbox makes this safe to repeat: an event that was applied in
the meantime (or by an earlier replay) is skipped, one that never was is applied.

Parts: reading the dead-letter topic and checking the original topics (async, Kafka),
selecting what to replay (pure), republishing (async, Kafka), and :func:`replay_command`, the
body of ``refex platform replay-dead-letters`` (``ops/platform.py`` declares only its
signature). What is printed is what an operator may see: offsets, ids, error types and texts,
never a key, a value or an original header, which may hold personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich import box
from rich.table import Table

from shared.contracts.topics import Owner, dead_letter_topic
from shared.kafka.connection import KafkaConnection
from shared.kafka.consumer import UNREADABLE
from shared.operator import console, err_console, run
from shared.operator_audit import audited

DLQ_HEADER_PREFIX = "dlq_"
ERROR_CHARS_SHOWN = 60


class Service(StrEnum):
    """The services with a dead-letter topic (each one's consumer group is its name)."""

    INTAKE = Owner.INTAKE.value
    REFERRAL = Owner.REFERRAL.value
    NOTIFICATION = Owner.NOTIFICATION.value
    EVIDENCE = Owner.EVIDENCE.value

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.value)


class DeadLetterTopicMissing(Exception):
    """The service's dead-letter topic does not exist (``refex platform create-topics``)."""


class ReplayInterrupted(Exception):
    """Sending stopped part-way (broker away, a refused record): ``sent`` went out first."""

    def __init__(self, sent: int, cause: BaseException) -> None:
        super().__init__(f"{sent} sent before {type(cause).__name__}")
        self.sent = sent
        self.cause = cause


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, as read (offset: its position there)."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return None

    @property
    def original_topic(self) -> str | None:
        return self.header("dlq_original_topic")

    @property
    def original_partition(self) -> int | None:
        return _int(self.header("dlq_original_partition"))

    @property
    def original_offset(self) -> int | None:
        return _int(self.header("dlq_original_offset"))

    @property
    def failed_at(self) -> datetime | None:
        return parse_time(self.header("dlq_failed_at"))

    @property
    def error_type(self) -> str:
        return self.header("dlq_error_type") or "?"

    @property
    def error(self) -> str:
        return self.header("dlq_error") or ""

    @property
    def event_id(self) -> str | None:
        return self.header("ce_id")

    @property
    def omitted(self) -> str | None:
        """What of the original record this dead letter lacks, if anything: it cannot be
        replayed as it was. A record aiokafka could not read at all (a header name that is not
        UTF-8) was dead-lettered with nothing of it kept but its position."""
        note = self.header("dlq_omitted")
        if note is not None:
            return note
        if UNREADABLE in self.error:
            return "the whole record (unreadable: kept its position only)"
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time; one without an offset is taken as UTC (``dlq_failed_at`` is UTC).
    None when absent or unreadable."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def original_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The record's own headers, in their order and byte for byte: every ``dlq_*`` header
    removed. All of them, not only the ones the last failure added: a record must never reach
    a live topic carrying a dead letter's bookkeeping."""
    return [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]


@dataclass(frozen=True, slots=True)
class Skipped:
    letter: DeadLetter
    reason: str


@dataclass(frozen=True, slots=True)
class Selection:
    """What a replay would do with the dead letters read.

    ``replay`` is sorted by original topic, partition and offset: the original order within
    each original partition, whatever order the dead letters were written in."""

    replay: list[DeadLetter]
    refused: list[DeadLetter]  # the original is not kept in full: never replayed
    skipped: list[Skipped]
    not_selected: int = 0  # left out by the filters

    @property
    def original_topics(self) -> set[str]:
        return {t for t in (d.original_topic for d in self.replay) if t is not None}


def select(
    letters: Iterable[DeadLetter],
    *,
    original_topic: str | None = None,
    since: datetime | None = None,
) -> Selection:
    """Pick the dead letters to replay (``letters`` in dead-letter topic order).

    Filters: ``original_topic``; ``since`` keeps dead letters whose ``dlq_failed_at`` is at or
    after it (one without a readable time is left out: it cannot be shown to match). Of the
    rest, a record dead-lettered more than once (the consumer redelivered it before it could
    commit) is replayed once, at its first dead letter; one without its origin headers is
    skipped; one whose original was left out is refused."""
    replay: list[DeadLetter] = []
    refused: list[DeadLetter] = []
    skipped: list[Skipped] = []
    seen: dict[tuple[str, int, int], int] = {}
    not_selected = 0
    for letter in letters:
        if (original_topic is not None and letter.original_topic != original_topic) or (
            since is not None and (letter.failed_at is None or letter.failed_at < since)
        ):
            not_selected += 1
            continue
        topic, partition, offset = (
            letter.original_topic,
            letter.original_partition,
            letter.original_offset,
        )
        if topic is None or partition is None or offset is None:
            skipped.append(Skipped(letter, "not a dead letter: no original topic/partition/offset"))
            continue
        first = seen.setdefault((topic, partition, offset), letter.offset)
        if first != letter.offset:
            skipped.append(Skipped(letter, f"same record as the dead letter at offset {first}"))
        elif letter.omitted is not None:
            refused.append(letter)
        else:
            replay.append(letter)
    replay.sort(key=_original_position)
    return Selection(replay, refused, skipped, not_selected)


def _original_position(letter: DeadLetter) -> tuple[str, int, int]:
    return (
        letter.original_topic or "",
        letter.original_partition or 0,
        letter.original_offset or 0,
    )


def with_existing_targets(selection: Selection, partitions: Mapping[str, int]) -> Selection:
    """Skip dead letters whose original topic or partition no longer exists (``partitions``:
    each existing original topic's partition count): sending them elsewhere would not be a
    replay, and the producer would wait for the topic's metadata until it gave up."""
    keep: list[DeadLetter] = []
    skipped = list(selection.skipped)
    for letter in selection.replay:
        topic = letter.original_topic or ""
        count = partitions.get(topic)
        if count is None:
            skipped.append(Skipped(letter, f"original topic {topic} no longer exists"))
        elif (letter.original_partition or 0) >= count:
            skipped.append(Skipped(letter, f"{topic} has no partition {letter.original_partition}"))
        else:
            keep.append(letter)
    return Selection(keep, selection.refused, skipped, selection.not_selected)


async def _partitions(kafka: KafkaConnection, names: Sequence[str]) -> dict[str, int]:
    """Partition count of each of ``names`` that exists."""
    if not names:
        return {}
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-dlq-replay")
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["partitions"]}


async def read_dead_letters(
    kafka: KafkaConnection, topic: str, *, from_offset: int | None = None
) -> list[DeadLetter]:
    """Every record of the dead-letter topic (from ``from_offset`` on, in each partition: the
    dead-letter topics have one) up to its end when reading starts. No consumer group: reading
    commits nothing and moves no one's offsets."""
    partitions = [
        TopicPartition(topic, p) for p in range((await _partitions(kafka, [topic])).get(topic, 0))
    ]
    if not partitions:
        raise DeadLetterTopicMissing(topic)
    reader = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="refex-dlq-replay",
    )
    await reader.start()
    letters: list[DeadLetter] = []
    try:
        reader.assign(partitions)
        starts = await reader.beginning_offsets(partitions)
        ends = await reader.end_offsets(partitions)
        for tp in partitions:
            # Below the log start (retention deleted it) there is nothing left to read.
            reader.seek(tp, max(starts[tp], from_offset or 0))
        pending = {tp for tp in partitions if max(starts[tp], from_offset or 0) < ends[tp]}
        while pending:
            batch = await reader.getmany(*pending, timeout_ms=1000)
            for records in batch.values():
                letters.extend(
                    DeadLetter(r.offset, r.key, r.value, tuple(r.headers or ()))
                    for r in records
                    if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
            # position, not the last offset seen: the end may be a gap (an aborted write)
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
    finally:
        await reader.stop()
    letters.sort(key=lambda d: d.offset)
    return letters


async def plan(
    kafka: KafkaConnection,
    service: Service,
    *,
    from_offset: int | None = None,
    original_topic: str | None = None,
    since: datetime | None = None,
) -> Selection:
    """Read the service's dead letters and decide what a replay sends: nothing is sent."""
    letters = await read_dead_letters(kafka, service.dead_letter_topic, from_offset=from_offset)
    selection = select(letters, original_topic=original_topic, since=since)
    existing = await _partitions(kafka, sorted(selection.original_topics))
    return with_existing_targets(selection, existing)


async def replay(kafka: KafkaConnection, letters: Sequence[DeadLetter]) -> int:
    """Send each dead letter's original record back to its original topic and partition, in
    the order given, one at a time (each acknowledged by every in-sync replica before the
    next: a failure leaves no later record sent ahead of an earlier one). Returns how many
    were sent; raises :class:`ReplayInterrupted` if sending stops part-way."""
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        client_id="refex-dlq-replay",
        # A record may be as large as its topic allows (the dead-letter publisher's limit too).
        max_request_size=4 * 1024 * 1024,
    )
    sent = 0
    try:
        await producer.start()
        for letter in letters:
            await producer.send_and_wait(
                letter.original_topic,
                value=letter.value,
                key=letter.key,
                partition=letter.original_partition,
                headers=original_headers(letter.headers),
            )
            sent += 1
    except Exception as exc:
        raise ReplayInterrupted(sent, exc) from exc
    finally:
        await producer.stop()  # also after a failed start, or aiokafka warns of a leak
    return sent


def _origin(letter: DeadLetter) -> str:
    """``topic/partition/offset`` of the original record."""

    def shown(value: object) -> str:
        return "?" if value is None else str(value)

    return "/".join(
        shown(v) for v in (letter.original_topic, letter.original_partition, letter.original_offset)
    )


def _shortened(text: str, limit: int = ERROR_CHARS_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def replay_table(letters: Sequence[DeadLetter], title: str) -> Table:
    """Dead letters by position and error only. The error text is safe to show: dead letters
    carry ``describe_error`` output, which never echoes input values. Only that text wraps in
    a narrow terminal; offsets, topics and times stay whole (copyable)."""
    table = Table(title=title, caption="original: topic/partition/offset", box=box.SIMPLE_HEAD)
    for name in ("offset", "original", "error type", "error", "failed at"):
        table.add_column(name, no_wrap=name != "error")
    for d in letters:
        at = d.failed_at
        table.add_row(
            str(d.offset),
            _origin(d),
            d.error_type,
            _shortened(d.error),
            at.strftime("%Y-%m-%d %H:%M:%S") if at else "?",
        )
    return table


def refused_lines(letters: Sequence[DeadLetter]) -> list[str]:
    """One line per dead letter that cannot be replayed (lines, not a table: they wrap in a
    narrow terminal and stay copyable), with what the operator needs to find the original
    record at its sender: its position and event id."""
    return [
        f"offset {d.offset}: {_origin(d)} event {d.event_id or '-'}: left out {d.omitted}"
        for d in letters
    ]


def render_selection(selection: Selection, *, dry_run: bool) -> None:
    if dry_run:
        console.print(replay_table(selection.replay, "Would be replayed (dry run: nothing sent)"))
    if selection.refused:
        console.print("Not replayable (the dead letter lacks part of the original record):")
        for line in refused_lines(selection.refused):
            console.print(f"  {line}", highlight=False, soft_wrap=True)


def render_summary(selection: Selection, replayed: int) -> None:
    """replayed N, skipped M, each skip with its reason (by dead-letter offset)."""
    console.print(
        f"replayed {replayed}, skipped {len(selection.skipped)}"
        + (
            f" ({selection.not_selected} not selected by the filters)"
            if selection.not_selected
            else ""
        ),
        highlight=False,
    )
    for skip in selection.skipped:
        console.print(
            f"  skipped dead letter at offset {skip.letter.offset}: {skip.reason}", highlight=False
        )


# The command's options (declared here to keep ops/platform.py's share to its signature).
FromOffset = Annotated[
    int | None, typer.Option(min=0, help="Start at this offset of the dead-letter topic.")
]
Since = Annotated[
    str | None,
    typer.Option(
        help="Only dead letters that failed at or after this time (ISO 8601; UTC if it names no "
        "time zone)."
    ),
]
OriginalTopic = Annotated[str | None, typer.Option(help="Only dead letters from this topic.")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="List what would be replayed; send nothing.")
]

AUDITED_COMMAND = "platform replay-dead-letters"


def replay_command(
    kafka: KafkaConnection,
    service: Service,
    *,
    from_offset: int | None,
    since: str | None,
    original_topic: str | None,
    dry_run: bool,
) -> None:
    """``refex platform replay-dead-letters``: read and select (nothing changes, nothing is
    audited), refuse if any selected dead letter lacks its original, else send under an audit
    record; a dry run stops after listing."""
    since_at = parse_time(since)
    if since is not None and since_at is None:
        err_console.print(f"[red]--since is not an ISO 8601 time:[/red] {since}")
        raise typer.Exit(2)
    try:
        selection = run(
            plan(
                kafka,
                service,
                from_offset=from_offset,
                original_topic=original_topic,
                since=since_at,
            )
        )
    except DeadLetterTopicMissing as exc:
        err_console.print(f"[red]no topic {exc}:[/red] run refex platform create-topics")
        raise typer.Exit(1) from exc
    render_selection(selection, dry_run=dry_run)
    if selection.refused:
        err_console.print(
            f"[red]{len(selection.refused)} dead letter(s) lack part of their original record "
            "(listed above): nothing was replayed.[/red] Resend those by hand from the "
            "sender's copy, or leave them out with --from-offset, --since or --original-topic."
        )
        raise typer.Exit(1)
    if dry_run or not selection.replay:
        render_summary(selection, replayed=0)
        return
    with audited(kafka, AUDITED_COMMAND, "dead_letters", service.value):
        try:
            replayed = run(replay(kafka, selection.replay))
        except ReplayInterrupted as exc:
            err_console.print(
                f"[red]replay stopped after {exc.sent} of {len(selection.replay)}:[/red] "
                f"{type(exc.cause).__name__}. Running it again is safe: the service skips the "
                "events it has applied."
            )
            raise typer.Exit(1) from exc
    render_summary(selection, replayed)
