"""What each e-mail says, in English (the source language of the ``refex`` catalogue, in
shared/i18n): a subject and a plain text per inbox type, with ``$name`` placeholders that
string.Template fills from the inbox event. Only references and what to do next: never personal
data. A type missing here has no e-mail."""

from __future__ import annotations

from dataclasses import dataclass

from shared.i18n import N_


@dataclass(frozen=True, slots=True)
class EmailText:
    subject: str
    text: str  # paragraphs separated by a blank line


EMAILS: dict[str, EmailText] = {
    "org.referralexchange.notification.referral-received.v1": EmailText(
        subject=N_("New referral $referral_id for your service $service_id"),
        text=N_(
            "A returnee has been referred to your service $service_id ($category), urgency "
            "$urgency.\nReferral: $referral_id (case $case_id), from "
            "$referring_agency_id.\n\nWhat to do: accept or reject it before $respond_by on "
            "your Kafka topic $respond_on_topic or in your case system. Contact details, if "
            "the returnee consented, arrive sealed for your key in your inbox."
        ),
    ),
    "org.referralexchange.notification.referral-reminder.v1": EmailText(
        subject=N_("Reminder: referral $referral_id awaits your decision"),
        text=N_(
            "Referral $referral_id (case $case_id) is still waiting for your "
            "decision.\nDeadline: $respond_by. Without an answer it goes to another provider."
        ),
    ),
    "org.referralexchange.notification.referral-status-changed.v1": EmailText(
        subject=N_("Referral $referral_id is now $to_state"),
        text=N_(
            "Your referral $referral_id (case $case_id, need $need_id) changed from "
            "$from_state to $to_state at $recipient_agency_id.\nReason: $reason_code. Outcome: "
            "$outcome."
        ),
    ),
    "org.referralexchange.notification.referral-cancelled.v1": EmailText(
        subject=N_("Referral $referral_id cancelled"),
        text=N_(
            "Referral $referral_id (case $case_id) is cancelled ($reason_code).\nErase what "
            "you received about this returnee: $erase_received_data."
        ),
    ),
    "org.referralexchange.notification.need-unmatched.v1": EmailText(
        subject=N_("No provider found for need $need_id of case $case_id"),
        text=N_(
            "No provider could be found for need $need_id ($category) of case "
            "$case_id.\nReason: $reason. It will be matched automatically when a fitting "
            "service is listed."
        ),
    ),
    "org.referralexchange.notification.submission-rejected.v1": EmailText(
        subject=N_("Submission $submission_id was rejected"),
        text=N_(
            "A message you sent ($submission_id) was rejected: $reason.\nFields: "
            "$fields.\n\nWhat to do: correct these fields and send it again."
        ),
    ),
    "org.referralexchange.notification.disclosure-received.v1": EmailText(
        subject=N_("Contact details for referral $referral_id are in your inbox"),
        text=N_(
            "Contact details for referral $referral_id (case $case_id) were sent sealed for "
            "your agency's key. Open them in your case system; they are not in this e-mail."
        ),
    ),
    "org.referralexchange.notification.erasure-confirmed.v1": EmailText(
        subject=N_("Case $agency_case_ref erased"),
        text=N_(
            "Case $agency_case_ref (case $case_id) was erased at $erased_at: its personal data "
            "can no longer be decrypted anywhere."
        ),
    ),
    "org.referralexchange.notification.response-refused.v1": EmailText(
        subject=N_("Your answer $response_id was refused"),
        text=N_(
            "Your answer $response_id about referral $referral_id changed nothing: $error, "
            "$reason (current state: $current_state).\nFields: $fields."
        ),
    ),
    "org.referralexchange.notification.referral-rerouted.v1": EmailText(
        subject=N_("Referral for need $need_id of case $case_id went to another provider"),
        text=N_(
            "After a rejection or no answer, need $need_id of case $case_id was referred "
            "again: referral $referral_id to $recipient_agency_id (attempt $attempt, "
            "previously $previous_referral_id)."
        ),
    ),
    "org.referralexchange.notification.submission-accepted.v1": EmailText(
        subject=N_("Submission $submission_id accepted: case $case_id ($outcome)"),
        text=N_(
            "Your submission $submission_id about your case $agency_case_ref was applied: "
            "$outcome.\nIts case id in Referral Exchange is $case_id; referrals and answers "
            "about it name this id."
        ),
    ),
    "org.referralexchange.notification.listing-published.v1": EmailText(
        subject=N_("Listing $service_id is published ($status)"),
        text=N_(
            "Your listing message $submission_id was applied: service $service_id is now "
            "$status in the directory."
        ),
    ),
    "org.referralexchange.notification.listing-withdrawn.v1": EmailText(
        subject=N_("Listing $service_id is withdrawn"),
        text=N_(
            "Your tombstone $submission_id was applied: service $service_id is no longer in "
            "the directory. Open referrals to it are not changed."
        ),
    ),
    "org.referralexchange.notification.listing-rejected.v1": EmailText(
        subject=N_("Listing message $submission_id was rejected"),
        text=N_(
            "A listing message you sent ($submission_id) was rejected: $reason.\nFields: "
            "$fields.\n\nWhat to do: correct these fields and publish the listing again. The "
            "directory still holds the previous version, if any."
        ),
    ),
    "org.referralexchange.notification.response-applied.v1": EmailText(
        subject=N_("Your answer $response_id was applied"),
        text=N_(
            "Your answer $response_id ($action) moved referral $referral_id from $from_state "
            "to $to_state."
        ),
    ),
    "org.referralexchange.notification.handover-proposed.v1": EmailText(
        subject=N_(
            "Handover $handover_id of case $case_id awaits the answer of $answering_agency_id"
        ),
        text=N_(
            "A handover of case $case_id from its owner $owner_agency_id to "
            "$receiving_agency_id was proposed ($direction, reason $reason): handover "
            "$handover_id.\nIt waits on the answer of $answering_agency_id until "
            "$respond_by.\n\nWhat to do: if you are $answering_agency_id, accept or reject it "
            "before $respond_by on your Kafka topic $respond_on_topic "
            "(handover-answer-submitted) or in your case system. Without an answer it expires "
            "and $owner_agency_id keeps the case."
        ),
    ),
    "org.referralexchange.notification.handover-ended.v1": EmailText(
        subject=N_("Handover $handover_id of case $case_id ended: $state"),
        text=N_(
            "Handover $handover_id of case $case_id from $owner_agency_id to "
            "$receiving_agency_id ended at $occurred_at: $state.\nReason: $reason.\n\nNothing "
            "moved: $owner_agency_id keeps the case and its referrals go on."
        ),
    ),
    "org.referralexchange.notification.handover-refused.v1": EmailText(
        subject=N_("Your handover message $message_id was refused"),
        text=N_(
            "Your handover message $message_id (case $case_id, handover $handover_id) changed "
            "nothing: $error, $reason (handover state: $state).\nFields: $fields.\n\nWhat to "
            "do: check the case, the handover and who it waits on, then send a corrected "
            "message with a new ce_id."
        ),
    ),
    "org.referralexchange.notification.case-handed-over.v1": EmailText(
        subject=N_("Case $case_id was handed over to $to_agency_id"),
        text=N_(
            "Case $case_id was handed over from $from_agency_id to $to_agency_id at "
            "$handed_over_at (handover $handover_id).\nFrom now on only $to_agency_id writes "
            "the case, under its reference $to_agency_case_ref on its own submissions topic; "
            "referrals in flight go on and their progress goes to $to_agency_id."
        ),
    ),
    "org.referralexchange.notification.handover-failed.v1": EmailText(
        subject=N_("Handover $handover_id of case $case_id failed: $reason"),
        text=N_(
            "Handover $handover_id of case $case_id from $from_agency_id to $to_agency_id was "
            "accepted but the case could not move: $reason.\n\nNothing moved: $from_agency_id "
            "keeps the case. If the cause can be remedied (for example a consent covering the "
            "new owner), a new handover may be proposed."
        ),
    ),
    "org.referralexchange.notification.case-data-received.v1": EmailText(
        subject=N_("The personal data of case $case_id is in your inbox"),
        text=N_(
            "The personal data of case $case_id, handed over to you (handover $handover_id), "
            "was sent sealed for your agency's key. Open it in your case system; it is not in "
            "this e-mail."
        ),
    ),
    "org.referralexchange.notification.support-continues.v1": EmailText(
        subject=N_("Referral $referral_id continues"),
        text=N_(
            "Referral $referral_id (case $case_id, need $need_id) goes on: the referring side "
            "changed ($cause; end of assistance: $assistance_end_reason) at $occurred_at.\nThe "
            "case's owner is now $owner_agency_id; it hears the referral's progress.\n\nWhat "
            "to do: carry on with your support and answer the referral as before."
        ),
    ),
    "org.referralexchange.notification.continuity-proposed.v1": EmailText(
        subject=N_("Possible next owners for case $case_id"),
        text=N_(
            "The assistance of $owner_agency_id for case $case_id ended with needs still open: "
            "$open_need_ids.\nProgrammes that take cases over and fit the case, best first: "
            "$candidate_agencies.\n\nWhat to do: if one should take the case over, propose a "
            "handover to it (handover-proposal-submitted on your responses topic). Nothing "
            "happens otherwise."
        ),
    ),
    "org.referralexchange.notification.structural-gap-reported.v1": EmailText(
        subject=N_("Structural gap: $category in $area ($unmet_needs unmet needs)"),
        text=N_(
            "Between $period_start and $period_end, $unmet_needs needs of category $category "
            "($dimension) in district $area found no provider (the period before: "
            "$previous_period_unmet_needs; trend: $trend). Report $report_id; no case or "
            "person is named.\n\nWhat to do: answer with a commitment "
            "(structural-commitment-submitted, key $report_id) on your Kafka topic "
            "$respond_on_topic: a planned listing with its date, or not planned with a reason."
        ),
    ),
    "org.referralexchange.notification.structural-commitment-applied.v1": EmailText(
        subject=N_("Your commitment on structural gap $report_id was recorded"),
        text=N_(
            "Your commitment on the gap $report_id ($category in $area) was recorded: $kind "
            "(service $service_id, planned by $planned_by; not planned: $not_planned_reason). "
            "It replaced an earlier one: $replaced.\nIt appears beside the gap in the evidence "
            "report."
        ),
    ),
    "org.referralexchange.notification.structural-commitment-refused.v1": EmailText(
        subject=N_("Your commitment $message_id was refused"),
        text=N_(
            "Your commitment $message_id on report $report_id changed nothing: $error, "
            "$reason.\nFields: $fields.\n\nWhat to do: correct it and send it again with a new "
            "ce_id."
        ),
    ),
    "org.referralexchange.notification.alternatives-listed.v1": EmailText(
        subject=N_("Alternatives for need $need_id of case $case_id"),
        text=N_(
            "The providers that can take need $need_id of case $case_id, best first: "
            "$alternative_services.\nWaiting for your choice: $held. None acceptable because: "
            "$unmatched_reason. Excluded services: $excluded_service_ids; agencies: "
            "$excluded_agency_ids.\n\nWhat to do: choose one (a referrer instruction with "
            "action choose and its service_id on your responses topic), or exclude some and "
            "list again."
        ),
    ),
    "org.referralexchange.notification.instruction-applied.v1": EmailText(
        subject=N_("Your instruction $instruction_id was applied"),
        text=N_(
            "Your instruction $instruction_id ($action, case $case_id, need $need_id) was "
            "applied. Referral: $referral_id (previous: $previous_referral_id), service "
            "$service_id. Excluded services: $excluded_service_ids; agencies: "
            "$excluded_agency_ids.\n\nWhat to do: nothing; you will hear the referral's "
            "progress."
        ),
    ),
    "org.referralexchange.notification.instruction-refused.v1": EmailText(
        subject=N_("Your instruction $instruction_id was refused"),
        text=N_(
            "Your instruction $instruction_id ($action, case $case_id, need $need_id, referral "
            "$referral_id, service $service_id) changed nothing: $error, $reason (referral "
            "state: $current_state; matching: $unmatched_reason).\nFields: $fields.\n\nWhat to "
            "do: check the case, the need, the referral and the service, then send a corrected "
            "instruction with a new ce_id."
        ),
    ),
    "org.referralexchange.notification.possible-duplicate.v1": EmailText(
        subject=N_("Case $case_id may be the same person as a case of $duplicate_owner_agency_id"),
        text=N_(
            "Intake found that your case $case_id probably concerns the same person as case "
            "$duplicate_case_id of $duplicate_owner_agency_id (their identity details match). "
            "Both cases' consent allows telling both agencies.\n\nWhat to do: contact "
            "$duplicate_owner_agency_id to coordinate, so that the person is not assisted "
            "twice or referred twice for the same need. Nothing was merged or changed."
        ),
    ),
    "org.referralexchange.notification.disclosure-erased.v1": EmailText(
        subject=N_("$recipient_agency_id erased the data of referral $referral_id"),
        text=N_(
            "$recipient_agency_id confirmed that it erased, at $erased_at, the personal data "
            "it received for referral $referral_id of case $case_id. The disclosure log "
            "records it.\n\nNothing to do."
        ),
    ),
    "org.referralexchange.notification.erasure-confirmation-recorded.v1": EmailText(
        subject=N_("Your erasure of the data of referral $referral_id is recorded"),
        text=N_(
            "Your confirmation that you erased, at $erased_at, the personal data received for "
            "referral $referral_id is recorded in the disclosure log, and the case's owner "
            "($owner_agency_id) is told.\n\nNothing more to do."
        ),
    ),
    "org.referralexchange.notification.follow-up-reminder.v1": EmailText(
        subject=N_("Follow-up $wave of case $case_id is due on $due_on"),
        text=N_(
            "The $wave follow-up of your case $case_id is due on $due_on.\n\nWhat to do: plan "
            "the assessment with the returnee, then send it as intake.assessment-submitted on "
            "your submissions topic (case $case_id, wave $wave)."
        ),
    ),
    "org.referralexchange.notification.follow-up-due.v1": EmailText(
        subject=N_("Follow-up $wave of case $case_id is due today"),
        text=N_(
            "The $wave follow-up of your case $case_id is due ($due_on).\n\nWhat to do: assess "
            "the returnee and send the answers as intake.assessment-submitted on your "
            "submissions topic (case $case_id, wave $wave)."
        ),
    ),
    "org.referralexchange.notification.follow-up-missed.v1": EmailText(
        subject=N_("Follow-up $wave of case $case_id was missed"),
        text=N_(
            "No assessment of the $wave follow-up of your case $case_id (due on $due_on) came "
            "within its grace period: it counts as missed in the evidence.\n\nWhat to do: an "
            "assessment sent now is still recorded, under the same wave."
        ),
    ),
    "org.referralexchange.notification.assessment-recorded.v1": EmailText(
        subject=N_("Assessment $wave of case $case_id is recorded"),
        text=N_(
            "Your $wave assessment of case $case_id ($assessed_on, $indicators_answered "
            "indicators answered, set $indicator_set) is recorded.\n\nNothing more to do; a "
            "new assessment of the same wave would replace it."
        ),
    ),
}
