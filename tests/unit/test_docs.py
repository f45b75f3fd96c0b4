"""The README stays in step with the code: commands first, every catalogue topic listed."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.contracts import events as ev
from shared.contracts.topics import AGENCY_FAMILIES, CATALOGUE

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_readme_topic_table_covers_the_catalogue() -> None:
    for spec in CATALOGUE:
        assert f"`{spec.name}`" in README, spec.name
    for family in AGENCY_FAMILIES:
        assert f"`{family.template.name}`" in README, family.template.name


EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
VALID_EXAMPLES = {
    "agency-provider.json": ev.AgencyRecord,
    "agency-referrer.json": ev.AgencyRecord,
    "listing.json": ev.ServiceListing,
    "submission.json": ev.CaseSubmission,
    "case-update.json": ev.CaseUpdate,
    "consent-withdrawal.json": ev.ConsentWithdrawal,
    "erasure-request.json": ev.ErasureRequest,
    "case-closure.json": ev.CaseClosure,
    "response-accept.json": ev.ReferralResponse,
    "response-reject.json": ev.ReferralResponse,
    "assistance-end.json": ev.AssistanceEnd,
    "case-closure-continue.json": ev.CaseClosure,
    "handover-proposal.json": ev.HandoverProposal,
    "handover-proposal-consent.json": ev.HandoverProposal,
    "handover-request.json": ev.HandoverRequest,
    "handover-answer-accept.json": ev.HandoverAnswer,
    "handover-answer-reject.json": ev.HandoverAnswer,
    "community-need.json": ev.CommunityNeedSubmission,
    "listing-community.json": ev.ServiceListing,
    "structural-commitment-planned.json": ev.StructuralCommitment,
    "structural-commitment-not-planned.json": ev.StructuralCommitment,
    # issue 18 caseworker control
    "instruction-alternatives.json": ev.ReferrerInstruction,
    "instruction-exclude.json": ev.ReferrerInstruction,
    "instruction-choose.json": ev.ReferrerInstruction,
    "instruction-revoke.json": ev.ReferrerInstruction,
    "instruction-redirect.json": ev.ReferrerInstruction,
    "erasure-confirmation.json": ev.ErasureConfirmation,
    "assessment.json": ev.AssessmentSubmission,
}


def test_every_example_is_accounted_for() -> None:
    files = {p.name for p in EXAMPLES.glob("*.json")}
    assert files == set(VALID_EXAMPLES) | {"submission-invalid.json"}


@pytest.mark.parametrize(("name", "model"), sorted(VALID_EXAMPLES.items()))
def test_every_documented_example_is_valid(name: str, model: type[ev.Contract]) -> None:
    model.model_validate_json((EXAMPLES / name).read_text())


def test_the_invalid_example_fails_on_each_documented_field() -> None:
    with pytest.raises(ValidationError) as info:
        ev.CaseSubmission.model_validate_json((EXAMPLES / "submission-invalid.json").read_text())
    fields = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert {
        "profile.return_date",
        "profile.return_area",
        "profile.languages.0",
        "needs.0.category",
        "consent",
    } <= fields


INTEGRATORS = (Path(__file__).resolve().parents[2] / "docs" / "integrators.md").read_text()


def test_integrators_guide_links_resolve() -> None:
    import re

    docs = Path(__file__).resolve().parents[2] / "docs"
    links = re.findall(r"\]\(((?:examples|schemas|asyncapi|\.\./shared)/[^)]+)\)", INTEGRATORS)
    assert links
    for link in links:
        assert (docs / link).exists(), link


def test_integrators_guide_names_only_real_types_and_covers_the_agency_side() -> None:
    import re

    named = set(re.findall(r"org\.referralexchange\.[a-z]+\.[a-z-]+\.v1", INTEGRATORS))
    assert named <= set(ev.PAYLOADS), named - set(ev.PAYLOADS)
    agency_side = {t for family in AGENCY_FAMILIES for t in family.template.payloads}
    assert agency_side <= named, agency_side - named
