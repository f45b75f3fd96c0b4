#!/usr/bin/env python3
"""A kcat stand-in for the commands of docs/integrators.md, for systems whose kcat cannot log in.

Debian 12's and Ubuntu 24.04's kcat are linked against librdkafka 2.0.2 and 2.3.0. Before 2.6.1,
librdkafka built a wrong SCRAM client-final message (it appended the client nonce a second
time); Kafka 4.x checks the nonce strictly, so every login fails with "invalid credentials"
although the password is right. The confluent-kafka wheel from PyPI bundles a recent librdkafka,
so this script, which speaks kcat's command line, works wherever that wheel installs (Python 3.8+;
tested with 3.11):

    pip install confluent-kafka==2.16.1
    kcat() { python3 /path/to/kcat.py "$@"; }      # then run the guide's commands unchanged

It supports the flags the guide uses, with kcat's meaning, and refuses any other:

    -P | -C | -V           produce, consume, print versions
    -b brokers -t topic    bootstrap servers, topic
    -X key=value           any librdkafka property (security.protocol, sasl.*, ...)
    -z codec               producer compression.codec
    -k key                 producer: key of every message (unless -K found one)
    -H name=value          producer: a header (repeatable; "-H name" sends a NULL value)
    -K delim               producer: each line is key<delim>value; consumer: print %k<delim>%s
    -Z                     producer: empty key or value after -K is sent as NULL;
                           consumer: an empty key or value prints as NULL
    -o beginning|end|N     consumer: where to start in every partition (default: end)
    -e                     consumer: exit once every partition is at its end
    -c count               stop after count messages
    -f format              consumer: %s value, %k key, %h headers (name=value,...), %t topic,
                           %p partition, %o offset, %T timestamp (ms), %% and \\n \\t \\r \\xHH
    file ...               producer: each file is one message (otherwise one message per
                           line of standard input; empty lines are skipped)

Errors are printed kcat-style ("% ERROR: ...") on standard error and exit with status 1; a login
that fails ends the run at once instead of waiting for timeouts.
"""

from __future__ import annotations

import getopt
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from typing import Any, BinaryIO, NoReturn

import confluent_kafka as ck

OPTIONS = "PCVhb:t:X:z:k:H:K:Zo:ec:f:"
# librdkafka 2.6.1 fixed the SCRAM nonce (confluentinc/librdkafka#4895); hex MMmmrrxx.
FIRST_LIBRDKAFKA_THAT_LOGS_IN = 0x020601FF
# Errors that end a run: the broker refused the login, or no broker can be reached (kcat
# terminates on the latter too).
FATAL_ERRORS = {ck.KafkaError._AUTHENTICATION, ck.KafkaError._ALL_BROKERS_DOWN}
# kcat -C reads partitions directly and never uses a consumer group, but confluent-kafka insists
# on a group.id: it is never joined nor committed to, so a refusal of it changes nothing.
IGNORED_CONSUMER_ERRORS = {
    ck.KafkaError.GROUP_AUTHORIZATION_FAILED,
    ck.KafkaError.COORDINATOR_NOT_AVAILABLE,
}


class UsageError(Exception):
    pass


@dataclass
class Options:
    mode: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    topic: str = ""
    key: bytes | None = None
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)
    key_delimiter: bytes | None = None
    null: bool = False
    offset: int = ck.OFFSET_END
    exit_at_end: bool = False
    count: int = -1
    format: str | None = None
    files: list[str] = field(default_factory=list)


def fail(message: str) -> NoReturn:
    print(f"% ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def info(message: str) -> None:
    print(f"% {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> Options:
    try:
        pairs, files = getopt.gnu_getopt(argv, OPTIONS)
    except getopt.GetoptError as e:
        raise UsageError(
            f"{e} (this stand-in supports only the flags docs/integrators.md uses)"
        ) from None
    o = Options(files=files)
    for flag, value in pairs:
        if flag in ("-P", "-C", "-V", "-h"):
            o.mode = flag[1]
        elif flag == "-b":
            o.config["bootstrap.servers"] = value
        elif flag == "-t":
            o.topic = value
        elif flag == "-X":
            name, eq, setting = value.partition("=")
            if not eq or not name:
                raise UsageError(f"-X expects key=value, not {value!r}")
            o.config[name] = setting
        elif flag == "-z":
            o.config["compression.codec"] = value
        elif flag == "-k":
            o.key = value.encode()
        elif flag == "-H":
            name, eq, header = value.partition("=")
            if not name:
                raise UsageError('expected -H "name=value" or -H "name"')
            o.headers.append((name, header.encode() if eq else None))
        elif flag == "-K":
            o.key_delimiter = unescape(value)
        elif flag == "-Z":
            o.null = True
        elif flag == "-o":
            o.offset = parse_offset(value)
        elif flag == "-e":
            o.exit_at_end = True
        elif flag == "-c":
            o.count = int(value)
        elif flag == "-f":
            o.format = value
    if o.mode in ("P", "C"):
        if "bootstrap.servers" not in o.config:
            raise UsageError("-b <brokers> is required")
        if not o.topic:
            raise UsageError("-t <topic> is required")
    if o.mode == "C" and o.files:
        raise UsageError(f"unexpected arguments for -C: {' '.join(o.files)}")
    return o


def parse_offset(value: str) -> int:
    if value == "beginning":
        return ck.OFFSET_BEGINNING
    if value == "end":
        return ck.OFFSET_END
    if value.isdigit():
        return int(value)
    raise UsageError(f"-o expects beginning, end or an absolute offset, not {value!r}")


def unescape(text: str) -> bytes:
    """kcat's backslash sequences in -f and -K: \\n \\t \\r \\xHH (a raw byte), and \\c
    for any other c."""
    table = {b"n": b"\n", b"t": b"\t", b"r": b"\r"}

    def one(m: re.Match[bytes]) -> bytes:
        if m[1][:1] == b"x":
            return bytes([int(m[1][1:], 16)])
        return table.get(m[1], m[1])

    return re.sub(rb"\\(x[0-9a-fA-F]{1,2}|.)", one, text.encode(), flags=re.S)


# ----- producing -----


def messages(o: Options, stdin: BinaryIO) -> Iterator[tuple[bytes | None, bytes | None]]:
    """(key, value) pairs: one per non-empty file, else one per non-empty line of stdin."""
    if o.files:
        for path in o.files:
            try:
                with open(path, "rb") as f:
                    body = f.read()
            except OSError as e:
                fail(f"Failed to open {path}: {e.strerror}")
            if body:  # kcat skips empty files
                yield o.key, body
        return
    for raw in stdin:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if not line:
            continue
        key: bytes | None = o.key
        value: bytes | None = line
        if o.key_delimiter is not None and o.key_delimiter in line:
            k, _, value = line.partition(o.key_delimiter)
            key = k
            if o.null:
                key, value = (key or None), (value or None)
        yield key, value


def produce(o: Options, stdin: BinaryIO) -> int:
    state = RunState()
    producer = ck.Producer({**o.config, "error_cb": state.on_error})
    failed = 0

    def delivered(err: ck.KafkaError | None, _msg: ck.Message) -> None:
        nonlocal failed
        if err is not None:
            failed += 1
            info(f"Delivery failed for message: {err.str()}")

    for sent, (key, value) in enumerate(messages(o, stdin), start=1):
        while True:
            state.check()
            try:
                producer.produce(
                    o.topic, value, key, headers=o.headers or None, on_delivery=delivered
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.05)
            except ck.KafkaException as e:
                fail(f"Failed to produce message: {e.args[0].str()}")
        producer.poll(0)
        if sent == o.count:
            break
    while len(producer) > 0:
        state.check()
        producer.poll(0.05)
    return 1 if failed else 0


# ----- consuming -----


def formatter(o: Options) -> Callable[[ck.Message], bytes]:
    """kcat's -f, parsed once into pieces that each render a part of a message."""
    null = b"NULL" if o.null else b""

    def headers(m: ck.Message) -> bytes:  # kcat's "name=value,name=value"; NULL for none
        found = m.headers() or []
        pairs = list(found.items()) if isinstance(found, dict) else found
        return b",".join(
            name.encode()
            + b"="
            + (b"NULL" if v is None else v if isinstance(v, bytes) else v.encode())
            for name, v in pairs
        )

    fields: dict[str, Callable[[ck.Message], bytes]] = {
        "s": lambda m: m.value() or null,
        "k": lambda m: m.key() or null,
        "h": headers,
        "t": lambda m: (m.topic() or "").encode(),
        "p": lambda m: str(m.partition()).encode(),
        "o": lambda m: str(m.offset()).encode(),
        "T": lambda m: str(m.timestamp()[1]).encode(),
        "%": lambda m: b"%",
    }

    def literal(chunk: bytes) -> Callable[[ck.Message], bytes]:
        return lambda m: chunk

    pieces: list[Callable[[ck.Message], bytes]] = []
    if o.format is None:  # kcat's default: the value, or key<delim>value with -K
        if o.key_delimiter is not None:
            pieces += [fields["k"], literal(o.key_delimiter)]
        pieces += [fields["s"], literal(b"\n")]
    else:
        for text, spec in re.findall(r"([^%]*)(%.?)?", o.format):
            if text:
                pieces.append(literal(unescape(text)))
            if spec:
                if spec[1:] not in fields:
                    raise UsageError(f"unsupported formatter: {spec}")
                pieces.append(fields[spec[1:]])
    return lambda m: b"".join(piece(m) for piece in pieces)


def topic_metadata(consumer: ck.Consumer, topic: str, state: RunState) -> Any:
    """The topic's metadata, asked for in short steps so that a refused login (reported to
    the error callback, which only poll serves) ends the run at once."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return consumer.list_topics(topic, timeout=1)
        except ck.KafkaException as e:
            consumer.poll(0.1)
            state.check()
            if time.monotonic() > deadline:
                fail(f"Failed to query metadata for topic {topic}: {e.args[0].str()}")


def consume(o: Options, stdout: BinaryIO) -> int:
    render = formatter(o)
    state = RunState()
    config = {
        # Named after the user, so an agency's prefix ACL (agency.<id>.*) covers it anyway.
        "group.id": f"{o.config.get('sasl.username', 'kcat')}.kcat",
        **o.config,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "error_cb": state.on_error,
    }
    consumer = ck.Consumer(config)
    try:
        metadata = topic_metadata(consumer, o.topic, state)
        topic = metadata.topics.get(o.topic)
        if topic is None or topic.error is not None:
            reason = topic.error.str() if topic is not None and topic.error else "not found"
            fail(f"Topic {o.topic} error: {reason}")
        partitions = sorted(topic.partitions)
        consumer.assign([ck.TopicPartition(o.topic, p, o.offset) for p in partitions])
        at_end: set[int] = set()
        received = 0
        while not state.stopped:
            state.check()
            m = consumer.poll(0.2)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == ck.KafkaError._PARTITION_EOF:
                    at_end.add(m.partition() or 0)
                    done = o.exit_at_end and at_end >= set(partitions)
                    info(
                        f"Reached end of topic {o.topic} [{m.partition()}] at offset "
                        f"{m.offset()}{': exiting' if done else ''}"
                    )
                    if done:
                        break
                elif err.code() not in IGNORED_CONSUMER_ERRORS:
                    fail(f"Consumer error: {err.str()}")
                continue
            at_end.discard(m.partition() or 0)
            stdout.write(render(m))
            stdout.flush()
            received += 1
            if received == o.count:
                break
    finally:
        consumer.close()
    return 0


# ----- common -----


class RunState:
    """Errors reported by librdkafka's callbacks, acted on by the main loop."""

    def __init__(self) -> None:
        self.fatal: str | None = None
        self.stopped = False
        signal.signal(signal.SIGTERM, self.stop)

    def on_error(self, err: ck.KafkaError) -> None:
        if err.code() in FATAL_ERRORS or err.fatal():
            # kcat's wording: the code's description, then librdkafka's reason
            self.fatal = self.fatal or f"{ck.KafkaError(err.code()).str()}: {err.str()}"

    def stop(self, *_: object) -> None:
        self.stopped = True

    def check(self) -> None:
        if self.fatal:
            fail(self.fatal)


def main(argv: list[str]) -> int:
    try:
        o = parse_args(argv)
        if o.mode == "V":
            wrapper = package_version("confluent-kafka")
            print(
                f"kcat.py (Referral Exchange): confluent-kafka {wrapper}, "
                f"librdkafka {ck.libversion()[0]}"
            )
            return 0
        if o.mode not in ("P", "C"):
            print(__doc__, file=sys.stderr)
            return 0 if o.mode == "h" else 1
        if ck.libversion()[1] < FIRST_LIBRDKAFKA_THAT_LOGS_IN:
            info(
                f"this confluent-kafka uses librdkafka {ck.libversion()[0]}, older than 2.6.1: "
                "SCRAM logins to Kafka 4.x will fail; pip install confluent-kafka==2.16.1"
            )
        if o.mode == "P":
            return produce(o, sys.stdin.buffer)
        return consume(o, sys.stdout.buffer)
    except UsageError as e:
        fail(str(e))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
