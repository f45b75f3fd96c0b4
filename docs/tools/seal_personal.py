#!/usr/bin/env python3
"""Seal a submission's ``personal`` block for intake, for agencies that send with kcat.

Referral Exchange's intake publishes its X25519 submission keys on ``intake.keys.v1`` (one JSON
record per key: ``key_sha256``, ``public_key``, ``status``). This script takes those records (as
``kcat -C ... -t intake.keys.v1 -o beginning -e -f '%s\\n'`` prints them, one per line) and a
submission's JSON (a case-submitted or case-update-submitted body), and prints the submission
with its ``personal`` block replaced by ``{"sealed_box": ..., "key_sha256": ...}``: a libsodium
sealed box (crypto_box_seal) of the block's JSON for intake's *current* key. Only intake can open
it; the rest of the body is unchanged. See docs/integrators.md §3.

    pip install pynacl
    python3 seal_personal.py intake-keys.jsonl submission.json > submission-sealed.json

Python 3.8+ and PyNaCl only. Errors go to standard error with exit status 1; the personal data
is never printed anywhere but inside the sealed box.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from typing import Any

from nacl.public import PublicKey, SealedBox

CURRENT = "current"


def current_key(lines: list[str]) -> tuple[bytes, str]:
    """The public key of the last record whose status is ``current`` (a compacted topic keeps
    one record per key; when a rotation publishes a new current key, it comes later), and its
    SHA-256. Lines that are no such record are skipped."""
    found: tuple[bytes, str] | None = None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("status") != CURRENT:
            continue
        public = base64.b64decode(record["public_key"], validate=True)
        if len(public) != 32 or hashlib.sha256(public).hexdigest() != record["key_sha256"]:
            raise ValueError("a current key record whose key_sha256 does not match its key")
        found = (public, record["key_sha256"])
    if found is None:
        raise ValueError("no current key among the records (is intake.keys.v1 empty?)")
    return found


def sealed(submission: dict[str, Any], public_key: bytes, key_sha256: str) -> dict[str, Any]:
    personal = submission.get("personal")
    if not isinstance(personal, dict):
        raise ValueError("the submission has no personal block to seal")
    if "sealed_box" in personal:
        raise ValueError("the personal block is sealed already")
    box = SealedBox(PublicKey(public_key)).encrypt(json.dumps(personal).encode("utf-8"))
    block = {"sealed_box": base64.b64encode(box).decode("ascii"), "key_sha256": key_sha256}
    return {**submission, "personal": block}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} INTAKE_KEYS_FILE SUBMISSION_FILE", file=sys.stderr)
        return 1
    try:
        with open(argv[1], encoding="utf-8") as keys_file:
            public_key, key_sha256 = current_key(keys_file.read().splitlines())
        with open(argv[2], encoding="utf-8") as submission_file:
            submission = json.load(submission_file)
        if not isinstance(submission, dict):
            raise ValueError("the submission is not a JSON object")
        print(json.dumps(sealed(submission, public_key, key_sha256), ensure_ascii=False))
    except (OSError, ValueError, KeyError) as exc:
        print(f"seal_personal: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
