"""Intake's pure rules: identity normalisation, consent coverage and withdrawal, encryption."""

from datetime import date
from typing import Any

import pytest
from nacl.public import PrivateKey, SealedBox

from services.intake import crypto, identity
from services.intake.consent import after_withdrawal, disclosure_refusal
from shared.contracts import events as ev
from shared.contracts.events import DisclosureRefusalReason as Refusal
from tests import factories as f


def person(**overrides: Any) -> ev.PersonalData:
    data: dict[str, Any] = {
        "given_name": "Ndèye Fatou",
        "family_name": "Diop",
        "date_of_birth": "1990-01-02",
    }
    return ev.PersonalData.model_validate({**data, **overrides})


def test_names_are_folded_and_order_free() -> None:
    assert identity.normalised_name(person()) == "diop fatou ndeye"
    swapped = person(given_name="DIOP", family_name="ndeye-fatou")
    assert identity.normalised_name(swapped) == identity.normalised_name(person())


def test_same_person_same_hashes_and_the_key_matters() -> None:
    key = bytes(32)
    a = identity.identity_hashes(key, person())
    b = identity.identity_hashes(key, person(given_name="NDEYE  FATOU"))
    assert a == b and len(a) == 1
    assert identity.identity_hashes(bytes(range(32)), person()) != a
    assert identity.identity_hashes(key, person(date_of_birth="1990-01-03")) != a


def test_a_name_alone_or_a_birth_year_never_links() -> None:
    assert identity.identity_keys(person(date_of_birth=None)) == []


def test_documents_are_normalised_per_issuing_country() -> None:
    doc = {"kind": "passport", "number": "a12-34.5", "issuing_country": "SN"}
    keys = identity.identity_keys(person(date_of_birth=None, documents=[doc]))
    assert keys == ["document|SN:A12345"]


def _consent(**scope: Any) -> ev.Consent:
    return ev.Consent.model_validate(f.consent(scope={"purposes": ["referral"], **scope}))


def _refusal(consent: ev.Consent, **kw: Any) -> Refusal | None:
    args: dict[str, Any] = {
        "recipient_id": "ngo-a",
        "recipient_type": ev.AgencyType.NGO,
        "category": "psychosocial.counselling",
        "today": date(2026, 11, 22),
    }
    return disclosure_refusal(consent, **{**args, **kw})


def test_consent_coverage_rules() -> None:
    assert _refusal(_consent()) is None
    assert (
        _refusal(ev.Consent.model_validate(f.consent(given=False, scope=None)))
        is Refusal.NO_CONSENT
    )
    assert _refusal(_consent(purposes=["statistics"])) is Refusal.PURPOSE_NOT_COVERED
    assert _refusal(_consent(expires_on="2026-11-21")) is Refusal.CONSENT_EXPIRED
    assert _refusal(_consent(expires_on="2026-11-22")) is None
    assert _refusal(_consent(agency_ids=["ngo-b"])) is Refusal.AGENCY_NOT_COVERED
    assert _refusal(_consent(agency_types=["government"])) is Refusal.AGENCY_TYPE_NOT_COVERED
    assert _refusal(_consent(categories=["social.housing"])) is Refusal.CATEGORY_NOT_COVERED
    assert (
        _refusal(
            _consent(
                agency_ids=["ngo-a"], agency_types=["ngo"], categories=["psychosocial.counselling"]
            )
        )
        is None
    )


def test_withdrawal_of_some_or_all_purposes() -> None:
    consent = _consent(purposes=["referral", "follow_up"])
    base = {"agency_id": "iom-sn", "agency_case_ref": "R1", "withdrawn_at": "2026-11-20T10:00:00Z"}
    partly = after_withdrawal(
        consent, ev.ConsentWithdrawal.model_validate({**base, "purposes": ["follow_up"]})
    )
    assert partly.given and partly.scope is not None
    assert partly.scope.purposes == [ev.ConsentPurpose.REFERRAL]
    fully = after_withdrawal(consent, ev.ConsentWithdrawal.model_validate(base))
    assert not fully.given and fully.scope is None


def test_crypto_shredding_and_sealing() -> None:
    master, data_key = crypto.new_data_key(), crypto.new_data_key()
    wrapped = crypto.wrap_key(master, data_key)
    sealed = crypto.encrypt(data_key, b"secret")
    assert crypto.decrypt(crypto.unwrap_key(master, wrapped), sealed) == b"secret"
    with pytest.raises(crypto.KeyDestroyed):
        crypto.unwrap_key(master, None)
    with pytest.raises(crypto.KeyDestroyed):
        crypto.decrypt(crypto.new_data_key(), sealed)
    recipient = PrivateKey.generate()
    import base64

    public = base64.b64encode(bytes(recipient.public_key)).decode()
    box = crypto.seal_for(public, b"contact")
    assert SealedBox(recipient).decrypt(base64.b64decode(box)) == b"contact"
    assert len(crypto.key_fingerprint(public)) == 64
