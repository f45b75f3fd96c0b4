"""Operator CLI behaviour that needs no broker: validation before publishing, exit codes."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops.cli import app

runner = CliRunner()


def test_groups_are_listed() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for group in ("platform", "intake", "referral", "notification", "demo"):
        assert group in result.output


def test_invalid_submission_file_exits_2_naming_fields(tmp_path: Path) -> None:
    doc = json.loads(Path("docs/examples/submission.json").read_text())
    doc["profile"]["age_band"] = "old"
    del doc["consent"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    # an unreachable broker proves nothing is published before validation
    result = runner.invoke(app, ["intake", "submit", str(path), "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "profile.age_band" in result.output and "consent" in result.output


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    result = runner.invoke(app, ["referral", "publish-listing", str(path)])
    assert result.exit_code == 2
    assert "cannot read" in result.output


@pytest.mark.parametrize("agency", ["Bad Agency", "../x"])
def test_follow_inbox_refuses_bad_agency_ids(agency: str) -> None:
    result = runner.invoke(app, ["notification", "follow-inbox", agency, "--idle-timeout", "1"])
    assert result.exit_code == 2
    assert "invalid agency id" in result.output


def test_intake_public_key_prints_public_keys_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from nacl.public import PrivateKey

    current, previous = bytes(range(32)), bytes(range(1, 33))
    for name, value in {
        "INTAKE_DATABASE_URL": "postgresql://intake:pw@127.0.0.1:1/intake",
        "INTAKE_MASTER_KEY": base64.b64encode(b"m" * 32).decode(),
        "INTAKE_DUPLICATE_KEY": base64.b64encode(b"d" * 32).decode(),
        "INTAKE_SUBMISSION_KEY": base64.b64encode(current).decode(),
        "INTAKE_SUBMISSION_PREVIOUS_KEYS": base64.b64encode(previous).decode(),
    }.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["intake", "public-key"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["current", "previous"]
    for line, private in zip(lines, (current, previous), strict=True):
        public = base64.b64encode(bytes(PrivateKey(private).public_key)).decode()
        assert f"public_key={public}" in line and "key_sha256=" in line
        assert base64.b64encode(private).decode() not in result.output
    monkeypatch.delenv("INTAKE_SUBMISSION_PREVIOUS_KEYS")
    monkeypatch.delenv("INTAKE_SUBMISSION_KEY")
    result = runner.invoke(app, ["intake", "public-key"])
    assert result.exit_code == 1 and "INTAKE_SUBMISSION_KEY is not set" in result.output
