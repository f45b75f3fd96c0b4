"""E-mail templates: every inbox type in every language, no personal data, HTML escaped."""

import pytest

from services.notification.email import LANGUAGES, render
from shared.contracts import topics


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
    assert 'lang="fr"' in page


def test_a_sealed_disclosure_is_announced_never_included() -> None:
    data = {"referral_id": "r-1", "case_id": "c-1", "sealed_box": "U0VDUkVU"}
    _, text, page = render(
        "org.referralexchange.notification.disclosure-received.v1", data, "en"
    ) or ("", "", "")
    assert "U0VDUkVU" not in text and "U0VDUkVU" not in page
    assert "r-1" in text
