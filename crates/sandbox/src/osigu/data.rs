//! Osigu's seeded sandbox data, fixed so tests and the onboarding sheet can name it:
//! sponsors, ~10 beneficiaries (active, expired, family groups) and the `MED-SBX-*` catalogue.
//!
//! Coverage dates are far in the past or the future so that "active" never drifts with the clock.

use serde_json::{json, Value};

use crate::fixtures::{OSIGU_ASYNC_SPONSOR, OSIGU_SYNC_SPONSOR};

/// How a sponsor decides pre-authorizations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Sync,
    Async,
}

const SPONSORS: [(&str, &str, Mode); 3] = [
    (OSIGU_SYNC_SPONSOR, "Sandbox Mock Sponsor", Mode::Sync),
    ("demo-insurer", "Demo Insurer", Mode::Sync),
    (OSIGU_ASYNC_SPONSOR, "Demo Insurer (async)", Mode::Async),
];

pub(super) fn sponsor_mode(id: &str) -> Option<Mode> {
    SPONSORS.iter().find(|s| s.0 == id).map(|s| s.2)
}

pub(super) fn sponsors() -> Vec<Value> {
    SPONSORS
        .iter()
        .map(|(id, name, mode)| {
            json!({"id": id, "name": name,
                   "decision": if *mode == Mode::Sync { "synchronous" } else { "asynchronous" }})
        })
        .collect()
}

struct Beneficiary {
    id: &'static str,
    document: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    birth_date: &'static str,
    relationship: &'static str,
    family_group: Option<&'static str>,
    active: bool,
}

const fn ben(
    id: &'static str,
    document: &'static str,
    (first_name, last_name): (&'static str, &'static str),
    birth_date: &'static str,
    relationship: &'static str,
    family_group: Option<&'static str>,
    active: bool,
) -> Beneficiary {
    Beneficiary {
        id,
        document,
        first_name,
        last_name,
        birth_date,
        relationship,
        family_group,
        active,
    }
}

// One row per beneficiary, kept as a table: it is the sandbox's onboarding sheet.
#[rustfmt::skip]
const BENEFICIARIES: [Beneficiary; 10] = [
    ben("ben-sbx-0001", "SBX-1001", ("Ana", "Lopez"),      "1985-03-14", "HOLDER", Some("FG-SBX-01"), true),
    ben("ben-sbx-0002", "SBX-1002", ("Carlos", "Lopez"),   "1983-07-02", "SPOUSE", Some("FG-SBX-01"), true),
    ben("ben-sbx-0003", "SBX-1003", ("Sofia", "Lopez"),    "2014-11-20", "CHILD",  Some("FG-SBX-01"), true),
    ben("ben-sbx-0004", "SBX-1004", ("Maria", "Perez"),    "1990-01-30", "HOLDER", None,              true),
    ben("ben-sbx-0005", "SBX-1005", ("Jorge", "Ramirez"),  "1976-05-09", "HOLDER", Some("FG-SBX-02"), false),
    ben("ben-sbx-0006", "SBX-1006", ("Lucia", "Ramirez"),  "1979-09-17", "SPOUSE", Some("FG-SBX-02"), false),
    ben("ben-sbx-0007", "SBX-1007", ("Pedro", "Gomez"),    "1968-12-01", "HOLDER", None,              true),
    ben("ben-sbx-0008", "SBX-1008", ("Elena", "Torres"),   "1992-04-22", "HOLDER", Some("FG-SBX-03"), true),
    ben("ben-sbx-0009", "SBX-1009", ("Mateo", "Torres"),   "2019-08-05", "CHILD",  Some("FG-SBX-03"), true),
    ben("ben-sbx-0010", "SBX-1010", ("Daniela", "Cruz"),   "1988-02-11", "HOLDER", None,              false),
];

impl Beneficiary {
    fn to_json(&self) -> Value {
        let family = self.family_group.map(|group| {
            let members: Vec<&str> = BENEFICIARIES
                .iter()
                .filter(|b| b.family_group == Some(group) && b.id != self.id)
                .map(|b| b.id)
                .collect();
            json!({"id": group, "members": members})
        });
        let (valid_from, valid_until, plan) = if self.active {
            ("2024-01-01", "2099-12-31", "SANDBOX-GOLD")
        } else {
            ("2020-01-01", "2023-12-31", "SANDBOX-BASIC")
        };
        json!({
            "id": self.id,
            "document": self.document,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "date_of_birth": self.birth_date,
            "relationship": self.relationship,
            "family_group": family,
            "sponsor": OSIGU_SYNC_SPONSOR,
            "coverage": {"active": self.active, "plan": plan,
                         "valid_from": valid_from, "valid_until": valid_until},
        })
    }
}

pub(super) fn beneficiary_by_document(document: &str) -> Option<Value> {
    BENEFICIARIES
        .iter()
        .find(|b| b.document == document)
        .map(Beneficiary::to_json)
}

pub(super) fn beneficiary_by_id(id: &str) -> Option<Value> {
    BENEFICIARIES
        .iter()
        .find(|b| b.id == id)
        .map(Beneficiary::to_json)
}

/// Whether a known beneficiary's coverage is active; `None` for an unknown id.
pub(super) fn coverage_active(id: &str) -> Option<bool> {
    BENEFICIARIES.iter().find(|b| b.id == id).map(|b| b.active)
}

const MEDICATIONS: [(&str, &str, &str, &str, bool); 8] = [
    ("MED-SBX-0001", "Amoxicillin", "capsule", "500 mg", true),
    ("MED-SBX-0002", "Ibuprofen", "tablet", "400 mg", false),
    ("MED-SBX-0003", "Paracetamol", "tablet", "500 mg", false),
    ("MED-SBX-0004", "Omeprazole", "capsule", "20 mg", true),
    ("MED-SBX-0005", "Metformin", "tablet", "850 mg", true),
    ("MED-SBX-0006", "Losartan", "tablet", "50 mg", true),
    ("MED-SBX-0007", "Salbutamol", "inhaler", "100 mcg/dose", true),
    ("MED-SBX-0008", "Atorvastatin", "tablet", "20 mg", true),
];

fn medication_json(m: &(&str, &str, &str, &str, bool)) -> Value {
    json!({"code": m.0, "name": m.1, "form": m.2, "strength": m.3, "requires_prescription": m.4})
}

/// The catalogue, optionally filtered by a case-insensitive substring of the name or code.
pub(super) fn medications(q: Option<&str>) -> Vec<Value> {
    let q = q.unwrap_or_default().to_ascii_lowercase();
    MEDICATIONS
        .iter()
        .filter(|m| m.0.to_ascii_lowercase().contains(&q) || m.1.to_ascii_lowercase().contains(&q))
        .map(medication_json)
        .collect()
}

pub(super) fn medication(code: &str) -> Option<Value> {
    MEDICATIONS.iter().find(|m| m.0 == code).map(medication_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_mix_active_expired_and_families() {
        assert_eq!(BENEFICIARIES.len(), 10);
        assert!(BENEFICIARIES.iter().any(|b| !b.active));
        let ana = beneficiary_by_document("SBX-1001").unwrap();
        assert_eq!(ana["coverage"]["active"], true);
        assert_eq!(
            ana["family_group"]["members"],
            json!(["ben-sbx-0002", "ben-sbx-0003"])
        );
        let expired = beneficiary_by_document(crate::fixtures::OSIGU_EXPIRED_DOCUMENT).unwrap();
        assert_eq!(expired["coverage"]["active"], false);
        assert!(beneficiary_by_document("nope").is_none());
    }

    #[test]
    fn catalogue_codes_are_prefixed_and_searchable() {
        assert!(medications(None)
            .iter()
            .all(|m| m["code"].as_str().unwrap().starts_with("MED-SBX-")));
        assert_eq!(medications(Some("IBU")).len(), 1);
        assert_eq!(sponsor_mode(OSIGU_ASYNC_SPONSOR), Some(Mode::Async));
    }
}
