"""The CA rotation's steps (deploy/tls/certificates.sh, decision 35) on files alone: what each
client trusts and which CA each server certificate is from, step by step, with openssl as the
judge. The rotation against a running cluster is tests/integration/test_cluster.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CERTIFICATES = ROOT / "deploy" / "tls" / "certificates.sh"
SAN = "DNS:localhost,IP:127.0.0.1"


def _tls(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'set -e; source "{CERTIFICATES}"; d="{folder}"; {script}'],
        capture_output=True,
        text=True,
        check=False,
    )


def _ok(folder: Path, script: str) -> str:
    run = _tls(folder, script)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _verifies(cafile: Path, certificate: Path) -> bool:
    run = subprocess.run(
        ["openssl", "verify", "-CAfile", str(cafile), str(certificate)],
        capture_output=True,
        check=False,
    )
    return run.returncode == 0


def _fingerprints(path: Path) -> list[str]:
    """The SHA-256 fingerprints of every certificate in a PEM file, in order."""
    blocks = path.read_text().split("-----END CERTIFICATE-----")
    out = []
    for block in blocks:
        if "BEGIN CERTIFICATE" not in block:
            continue
        pem = block[block.index("-----BEGIN") :] + "-----END CERTIFICATE-----\n"
        run = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
            input=pem,
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(run.stdout.strip())
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "tls"
    _ok(d, f'tls_ca "$d"; tls_server "$d" kafka "{SAN}"; tls_server "$d" postgres "{SAN}"')
    return d


def test_a_rotation_trusts_both_then_serves_the_new_then_trusts_it_alone(folder: Path) -> None:
    old_ca = folder / "old-ca.pem"
    old_ca.write_text((folder / "ca.crt").read_text())
    kafka = folder / "kafka.crt"
    first_kafka = kafka.read_text()

    # begin: clients trust both; the servers keep the old CA's certificates.
    _ok(folder, f'tls_rotate_ca_begin "$d"; tls_server "$d" kafka "{SAN}"')
    new_ca = folder / "ca-next.crt"
    trusted = _fingerprints(folder / "ca.crt")
    assert trusted == [*_fingerprints(old_ca), *_fingerprints(new_ca)]
    assert kafka.read_text() == first_kafka, "nothing reissued before the switch"
    assert _verifies(folder / "ca.crt", kafka)
    assert (folder / "rotation").read_text().strip() == "overlap"

    # switch: the next tls_server reissues by the new CA; the bundle trusts both certificates.
    _ok(folder, f'tls_rotate_ca_switch "$d"; tls_server "$d" kafka "{SAN}"')
    assert kafka.read_text() != first_kafka
    assert _verifies(new_ca, kafka) and not _verifies(old_ca, kafka)
    assert _verifies(folder / "ca.crt", kafka)
    # The chain the server presents ends with the CA that signed it, not the bundle.
    assert _fingerprints(kafka)[-1] == _fingerprints(new_ca)[0]
    assert len(_fingerprints(kafka)) == 2

    # finish refuses while a server certificate is still the old CA's (postgres here).
    refused = _tls(folder, 'tls_rotate_ca_finish "$d" kafka postgres')
    assert refused.returncode != 0 and "postgres.crt is not the new CA's" in refused.stderr
    assert (folder / "rotation").read_text().strip() == "switched"

    new_fingerprint = _fingerprints(new_ca)
    _ok(folder, f'tls_server "$d" postgres "{SAN}"; tls_rotate_ca_finish "$d" kafka postgres')
    assert _fingerprints(folder / "ca.crt") == new_fingerprint, "the new CA alone is trusted"
    assert _verifies(folder / "ca.crt", kafka) and not _verifies(old_ca, kafka)
    assert not (folder / "rotation").exists() and not (folder / "ca-old.crt").exists()
    assert not new_ca.exists() and not (folder / "ca-next.key").exists()
    # Outside a rotation the new CA signs: a renewed certificate verifies against ca.crt alone.
    _ok(folder, f'tls_server "$d" kafka "{SAN}" renew')
    assert _verifies(folder / "ca.crt", kafka) and not _verifies(old_ca, kafka)


def test_the_steps_refuse_to_run_out_of_order(folder: Path) -> None:
    switch = _tls(folder, 'tls_rotate_ca_switch "$d"')
    assert switch.returncode != 0 and "begin one first" in switch.stderr
    finish = _tls(folder, 'tls_rotate_ca_finish "$d" kafka')
    assert finish.returncode != 0 and "not switched yet (none)" in finish.stderr
    _ok(folder, 'tls_rotate_ca_begin "$d"')
    again = _tls(folder, 'tls_rotate_ca_begin "$d"')
    assert again.returncode != 0 and "under way" in again.stderr
    assert len(_fingerprints(folder / "ca.crt")) == 2, "a second begin adds no third CA"
    early = _tls(folder, 'tls_rotate_ca_finish "$d" kafka')
    assert early.returncode != 0 and "not switched yet (overlap)" in early.stderr


def test_renew_issues_a_new_key_from_the_same_ca(folder: Path) -> None:
    key = (folder / "kafka.key").read_text()
    crt = (folder / "kafka.crt").read_text()
    _ok(folder, f'tls_server "$d" kafka "{SAN}"')
    assert (folder / "kafka.key").read_text() == key, "a current certificate is kept"
    _ok(folder, f'tls_server "$d" kafka "{SAN}" renew')
    assert (folder / "kafka.key").read_text() != key
    assert (folder / "kafka.crt").read_text() != crt
    assert _verifies(folder / "ca.crt", folder / "kafka.crt")


def test_status_names_the_trusted_cas_and_each_certificates_issuer(folder: Path) -> None:
    _ok(folder, 'tls_rotate_ca_begin "$d"')
    status = _ok(folder, 'tls_status "$d" kafka postgres').splitlines()
    assert status[0] == "rotation: overlap"
    cas = [line for line in status if line.startswith("  Referral Exchange private CA")]
    assert len(cas) == 2 and cas[0] != cas[1]
    assert any(line.startswith("kafka: issued by Referral Exchange private CA") for line in status)


COMPOSE_CERTIFICATES = ROOT / "deploy" / "compose" / "certificates.sh"


def _compose(host: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(COMPOSE_CERTIFICATES), *args, str(host / ".env")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_rotates_the_ca_in_secrets_tls_and_keeps_the_modes(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / ".env").write_text("REFEX_PUBLIC_KAFKA_HOST=exchange.example.org\n")
    tls = tmp_path / "secrets" / "tls"
    assert _compose(tmp_path).returncode == 0
    old_ca = _fingerprints(tls / "ca.crt")
    first_pem = (tls / "kafka.pem").read_text()

    begun = _compose(tmp_path, "rotate-ca", "begin")
    assert begun.returncode == 0, begun.stderr
    assert "Rotating the certificates" in begun.stderr, "it says what to do next"
    assert _fingerprints(tls / "ca.crt")[0] == old_ca[0] and len(_fingerprints(tls / "ca.crt")) == 2
    assert (tls / "kafka.pem").read_text() == first_pem
    refused = _compose(tmp_path, "rotate-ca", "finish")
    assert refused.returncode != 0 and "not switched yet" in refused.stderr

    assert _compose(tmp_path, "rotate-ca", "switch").returncode == 0
    assert (tls / "kafka.pem").read_text() != first_pem
    new_ca = tls / "ca-next.crt"
    assert _verifies(new_ca, tls / "kafka.crt") and _verifies(new_ca, tls / "postgres.crt")
    assert _compose(tmp_path, "rotate-ca", "finish").returncode == 0
    assert len(_fingerprints(tls / "ca.crt")) == 1 and _fingerprints(tls / "ca.crt") != old_ca
    # As the containers need them: public files read-only, keys for the owner alone.
    modes = {p.name: p.stat().st_mode & 0o777 for p in tls.iterdir()}
    assert modes["ca.crt"] == modes["kafka.pem"] == modes["postgres.crt"] == 0o444
    assert modes["ca.key"] == modes["kafka.key"] == 0o400
    assert not {"ca-next.key", "ca-next.crt", "ca-old.crt", "rotation"} & set(modes)

    key = (tls / "kafka.key").read_bytes()
    assert _compose(tmp_path, "renew").returncode == 0
    assert (tls / "kafka.key").read_bytes() != key
    assert _verifies(tls / "ca.crt", tls / "kafka.crt")
    status = _compose(tmp_path, "status")
    assert status.returncode == 0 and status.stdout.startswith("rotation: none")
