//! Osigu's mutable sandbox records and their JSON shapes: pre-authorizations, prescriptions,
//! dispensations, outpatient claims and settlement batches, all behind one mutex (`Osigu::care`)
//! so that a step touching several records (a dispensation consuming a prescription, a batch
//! taking claims) sees and changes them at once.
//!
//! The types live here, apart from the handlers, so that every handler module depends on this
//! one and none on another. Field order is the JSON order; absent values are `null`, not omitted.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::data::Mode;

#[derive(Debug, Default)]
pub(super) struct Care {
    pub(super) authorizations: HashMap<String, Authorization>,
    pub(super) prescriptions: HashMap<String, Prescription>,
    pub(super) dispensations: HashMap<String, Dispensation>,
    /// Dispensation codes already used, with the dispensation that used each: the key of the 409.
    pub(super) dispensed_codes: HashMap<String, String>,
    pub(super) claims: HashMap<String, Claim>,
    pub(super) batches: HashMap<String, SettlementBatch>,
    serial: u64,
}

impl Care {
    /// One counter for every record kind: ids stay unique across kinds and easy to tell apart.
    pub(super) fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }
}

/// Where a pre-authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum AuthStatus {
    /// Created with `"complete": false`; waits for the complete call.
    Draft,
    /// Completed without an indication; complete it again with one.
    PendingIndication,
    /// Handed to the async sponsor; its decision arrives by webhook.
    PendingSponsor,
    Approved,
    Rejected,
}

impl AuthStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::PendingIndication => "PENDING_INDICATION",
            Self::PendingSponsor => "PENDING_SPONSOR",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct Authorization {
    pub(super) id: String,
    pub(super) status: AuthStatus,
    pub(super) sponsor: String,
    pub(super) beneficiary_id: String,
    pub(super) indication: Option<String>,
    pub(super) items: Vec<Value>,
    pub(super) authorization_code: Option<String>,
    pub(super) rejection_reason: Option<&'static str>,
    pub(super) created_at: String,
    pub(super) completed_at: Option<String>,
    /// When the sponsor approved or rejected it.
    pub(super) decided_at: Option<String>,
    /// The serial in the id, reused in the `authorization_code`.
    #[serde(skip)]
    pub(super) serial: u64,
    #[serde(skip)]
    pub(super) mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum PrescriptionStatus {
    Active,
    Dispensed,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct Prescription {
    pub(super) id: String,
    pub(super) status: PrescriptionStatus,
    pub(super) beneficiary_id: String,
    pub(super) prescriber: Option<String>,
    pub(super) diagnosis: Option<String>,
    pub(super) items: Vec<Value>,
    /// The dispensation that filled it.
    pub(super) dispensation_id: Option<String>,
    pub(super) created_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct Dispensation {
    pub(super) id: String,
    pub(super) code: String,
    pub(super) authorization_id: Option<String>,
    pub(super) prescription_id: Option<String>,
    pub(super) items: Value,
    /// Always `DISPENSED`: a dispensation is the record of medication handed out.
    pub(super) status: &'static str,
    pub(super) created_at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum ClaimStatus {
    /// Being filled in; the complete call closes it.
    Open,
    /// Ready to be settled (taken into a batch or not yet).
    Completed,
    /// Its settlement batch has been dispatched to the sponsor.
    SettlementDispatched,
}

impl ClaimStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Completed => "COMPLETED",
            Self::SettlementDispatched => "SETTLEMENT_DISPATCHED",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct Claim {
    pub(super) id: String,
    /// Always `OUTPATIENT`: the only claim type the sandbox takes.
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) status: ClaimStatus,
    pub(super) beneficiary_id: String,
    pub(super) sponsor: String,
    pub(super) authorization_id: Option<String>,
    pub(super) diagnosis: Option<String>,
    pub(super) items: Vec<Value>,
    /// The sum of the items' `amount`s, rounded to cents.
    pub(super) total_amount: f64,
    pub(super) settlement_batch_id: Option<String>,
    pub(super) created_at: String,
    pub(super) completed_at: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum BatchStatus {
    Open,
    Dispatched,
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct SettlementBatch {
    pub(super) id: String,
    pub(super) status: BatchStatus,
    pub(super) sponsor: String,
    pub(super) claim_ids: Vec<String>,
    pub(super) claims_count: usize,
    pub(super) total_amount: f64,
    pub(super) created_at: String,
    pub(super) dispatched_at: Option<String>,
}

/// Money is summed in cents so that 0.1 + 0.2 is 0.3.
pub(super) fn sum_amounts(amounts: impl IntoIterator<Item = f64>) -> f64 {
    let cents: i64 = amounts
        .into_iter()
        // Amounts are validated finite and non-negative; `as` saturates anything absurd.
        .map(|a| (a * 100.0).round() as i64)
        .fold(0, i64::saturating_add);
    cents as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_serialise_as_the_guide_spells_them() {
        for s in [
            AuthStatus::Draft,
            AuthStatus::PendingIndication,
            AuthStatus::PendingSponsor,
            AuthStatus::Approved,
            AuthStatus::Rejected,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert_eq!(
            serde_json::to_value(ClaimStatus::SettlementDispatched).unwrap(),
            json!("SETTLEMENT_DISPATCHED")
        );
        assert_eq!(
            serde_json::to_value(BatchStatus::Dispatched).unwrap(),
            json!("DISPATCHED")
        );
    }

    #[test]
    fn amounts_are_summed_in_cents() {
        assert_eq!(sum_amounts([0.1, 0.2]), 0.3);
        assert_eq!(sum_amounts([12.5, 30.0]), 42.5);
        assert_eq!(sum_amounts([19.999]), 20.0);
        assert_eq!(sum_amounts([]), 0.0);
    }

    #[test]
    fn a_claim_names_its_type_field_type() {
        let c = Claim {
            id: "clm-1".into(),
            kind: "OUTPATIENT",
            status: ClaimStatus::Open,
            beneficiary_id: "b".into(),
            sponsor: "s".into(),
            authorization_id: None,
            diagnosis: None,
            items: vec![],
            total_amount: 0.0,
            settlement_batch_id: None,
            created_at: "t".into(),
            completed_at: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "OUTPATIENT");
        assert_eq!(v["status"], "OPEN");
        assert!(v["settlement_batch_id"].is_null());
    }
}
