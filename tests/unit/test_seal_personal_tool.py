"""docs/tools/seal_personal.py, the guide's sealing tool for kcat users (issue 22): what it
seals, intake opens; it picks the current key of intake.keys.v1's records and refuses what it
cannot seal, without printing the personal data (the guide's whole kcat flow runs end to end in
tests/e2e/test_integrators_guide.py)."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from nacl.public import PrivateKey

from services.intake.sealing import SubmissionKeys, key_sha256, open_personal
from shared.contracts import events as ev

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((REPO / "docs/examples/submission.json").read_text())


def _load() -> ModuleType:
    path = REPO / "docs/tools/seal_personal.py"
    spec = importlib.util.spec_from_file_location("seal_personal", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _load()


def _record(key: PrivateKey, status: str) -> str:
    public = bytes(key.public_key)
    return json.dumps(
        {
            "schema_version": "1",
            "key_sha256": key_sha256(public),
            "public_key": base64.b64encode(public).decode(),
            "status": status,
            "published_at": "2026-11-02T10:00:00Z",
        }
    )


def test_it_seals_for_the_current_key_what_intake_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, current = PrivateKey.generate(), PrivateKey.generate()
    keys = tmp_path / "intake-keys.jsonl"
    lines = ["marker-not-json", _record(old, "current"), _record(current, "current")]
    lines.append(_record(old, "previous"))  # the rotation: the old one now previous
    keys.write_text("\n".join(lines) + "\n")
    submission = tmp_path / "submission.json"
    submission.write_text(json.dumps(EXAMPLE))

    assert tool.main(["seal_personal.py", str(keys), str(submission)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    sealed = ev.CaseSubmission.model_validate_json(out)
    assert isinstance(sealed.personal, ev.SealedPersonal)
    assert sealed.personal.key_sha256 == key_sha256(bytes(current.public_key))
    assert EXAMPLE["personal"]["family_name"] not in out
    opened = open_personal(sealed.personal, SubmissionKeys(current), require_sealed=True)
    assert opened == ev.PersonalData.model_validate(EXAMPLE["personal"])
    rest = json.loads(out)
    assert {k: v for k, v in rest.items() if k != "personal"} == {
        k: v for k, v in EXAMPLE.items() if k != "personal"
    }


@pytest.mark.parametrize(
    ("keys", "body", "message"),
    [
        ("", EXAMPLE, "no current key"),
        (_record(PrivateKey.generate(), "retired"), EXAMPLE, "no current key"),
        (None, {**EXAMPLE, "personal": None}, "no personal block"),
        (None, {**EXAMPLE, "personal": {"sealed_box": "x", "key_sha256": "y"}}, "sealed already"),
    ],
)
def test_it_refuses_what_it_cannot_seal(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keys: str | None,
    body: dict[str, object],
    message: str,
) -> None:
    keys_file, submission = tmp_path / "keys", tmp_path / "submission.json"
    keys_file.write_text(_record(PrivateKey.generate(), "current") if keys is None else keys)
    submission.write_text(json.dumps(body))
    assert tool.main(["seal_personal.py", str(keys_file), str(submission)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and message in err
    assert EXAMPLE["personal"]["family_name"] not in err
