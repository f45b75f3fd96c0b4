"""E-mail templates: every inbox type in every language, no personal data, HTML escaped."""

import base64
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.notification.email import render
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.events import Contract
from shared.i18n import LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_inbox_type_has_a_template(language: str) -> None:
    for ce_type in topics.AGENCY_INBOX.template.payloads:
        assert render(ce_type, {}, language) is not None, (language, ce_type)


def test_french_rendering_and_html() -> None:
    data = {
        "submission_id": "s-1",
        "reason": "body <bad>",
        "errors": [{"field": "consent"}],
        "schema_version": "1",
    }
    subject, text, page = render(
        "org.referralexchange.notification.submission-rejected.v1", data, "fr"
    ) or ("", "", "")
    assert subject == "Envoi s-1 refusé"
    assert "Champs : consent" in text
    assert "&lt;bad&gt;" in page and "<bad>" not in page
    assert 'lang="fr" dir="ltr"' in page


def test_a_sealed_disclosure_is_announced_never_included() -> None:
    data = {"referral_id": "r-1", "case_id": "c-1", "sealed_box": "U0VDUkVU"}
    _, text, page = render(
        "org.referralexchange.notification.disclosure-received.v1", data, "en"
    ) or ("", "", "")
    assert "U0VDUkVU" not in text and "U0VDUkVU" not in page
    assert "r-1" in text


def _rendered(ce_type: str, payload: Contract, language: str = "en") -> tuple[str, str, str]:
    rendered = render(ce_type, payload.model_dump(mode="json"), language)
    assert rendered is not None
    return rendered


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_proposed_handover_says_who_answers_where_and_by_when(language: str) -> None:
    notice = ev.InboxHandoverProposed(
        handover_id="h-1",
        case_id="c-1",
        direction=ev.HandoverDirection.OFFER,
        owner_agency_id="iom-sn",
        receiving_agency_id="gov-labour",
        answering_agency_id="gov-labour",
        reason=ev.HandoverReason.GOVERNMENT_SERVICE,
        respond_by=datetime(2026, 12, 9, 17, tzinfo=UTC),
        respond_on_topic=topics.AGENCY_RESPONSES.name("gov-labour"),
    )
    subject, text, _ = _rendered(ev.INBOX_HANDOVER_PROPOSED, notice, language)
    assert "h-1" in subject and "gov-labour" in subject
    assert "agency.gov-labour.responses.v1" in text
    assert notice.model_dump(mode="json")["respond_by"] in text
    assert "$" not in subject + text, "every placeholder filled"


def test_next_owners_are_named_by_agency_and_open_needs_listed() -> None:
    explanation = ev.MatchExplanation(matched=["category"], score=1.0, components={})
    proposed = ev.ContinuityProposed(
        case_id="c-1",
        owner_agency_id="iom-sn",
        open_need_ids=["n1", "n2"],
        candidates=[
            ev.ContinuityCandidate(agency_id=a, service_id=f"{a}-svc", explanation=explanation)
            for a in ("gov-labour", "undp-sn")
        ],
    )
    _, text, _ = _rendered(ev.INBOX_CONTINUITY_PROPOSED, proposed)
    assert "gov-labour, undp-sn" in text and "n1, n2" in text
    assert "explanation" not in text and "[" not in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_handed_over_cases_personal_data_is_announced_never_included(language: str) -> None:
    sealed = ev.CaseDataSealed(
        disclosure_id="d-1",
        handover_id="h-1",
        case_id="c-1",
        recipient_agency_id="gov-labour",
        sealed_box="U0VDUkVU",
        recipient_key_sha256="a" * 64,
        consent_recorded_at=datetime(2026, 10, 29, tzinfo=UTC),
    )
    subject, text, page = _rendered(ev.INBOX_CASE_DATA_RECEIVED, sealed, language)
    assert "U0VDUkVU" not in subject + text + page
    assert "c-1" in subject and "h-1" in text


CONSOLE = "http://localhost:8004"


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_email_about_a_referral_links_to_its_page_in_the_console(language: str) -> None:
    data = {"referral_id": "r-1", "case_id": "c-1", "respond_by": "2026-12-09T17:00:00Z"}
    subject, text, page = render(
        "org.referralexchange.notification.referral-reminder.v1", data, language, CONSOLE
    ) or ("", "", "")
    assert f"{CONSOLE}/referrals/r-1" in text
    assert f'<a href="{CONSOLE}/referrals/r-1">' in page
    assert "$" not in subject + text


def test_other_emails_link_to_the_inbox_and_none_without_a_console() -> None:
    data = {"submission_id": "s-1", "reason": "bad", "errors": []}
    ce_type = "org.referralexchange.notification.submission-rejected.v1"
    _, text, page = render(ce_type, data, "fr", CONSOLE) or ("", "", "")
    assert text.endswith(f"Ouvrir votre boîte de réception dans la console : {CONSOLE}/inbox")
    assert f'<a href="{CONSOLE}/inbox">' in page
    _, text, page = render(ce_type, data, "fr") or ("", "", "")
    assert "http" not in text + page


def test_a_referral_id_cannot_bend_the_link() -> None:
    data = {"referral_id": "r-1/../../admin?x=<b>", "case_id": "c-1"}
    _, text, page = render(
        "org.referralexchange.notification.referral-cancelled.v1", data, "en", CONSOLE
    ) or ("", "", "")
    assert f"{CONSOLE}/referrals/r-1%2F..%2F..%2Fadmin%3Fx%3D%3Cb%3E" in text
    assert "<b>" not in page


def test_arabic_emails_are_written_right_to_left() -> None:
    data = {"submission_id": "s-1", "reason": "bad", "errors": [{"field": "consent"}]}
    subject, text, page = render(
        "org.referralexchange.notification.submission-rejected.v1", data, "ar", CONSOLE
    ) or ("", "", "")
    assert subject == "رُفض الإرسال s-1"
    assert "الحقول: consent" in text and f"{CONSOLE}/inbox" in text
    assert '<html lang="ar" dir="rtl">' in page


def _notification_settings(monkeypatch: pytest.MonkeyPatch, console_url: str) -> object:
    from services.notification.settings import NotificationSettings

    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", "postgresql://n:p@h:1/d")
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", base64.b64encode(bytes(32)).decode())
    monkeypatch.setenv("NOTIFICATION_CONSOLE_URL", console_url)
    return NotificationSettings().console_url


def test_the_console_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _notification_settings(monkeypatch, "https://console.example/") == (
        "https://console.example"
    )
    assert _notification_settings(monkeypatch, "") is None
    with pytest.raises(ValidationError, match="http"):
        _notification_settings(monkeypatch, "javascript:alert(1)")
