//! How the sandbox sponsors decide a completed pre-authorization, as pure functions so the rules
//! are tested apart from HTTP and timers.
//!
//! On completion, in this order:
//!
//! 1. the async sponsor (`demo-insurer-async`) → `PENDING_SPONSOR`, whatever else is asked;
//! 2. a beneficiary whose coverage expired → `REJECTED`, `rejection_reason: "COVERAGE_INACTIVE"`;
//! 3. no (or a blank) `indication` → `PENDING_INDICATION` (complete again with one);
//! 4. a medication outside the catalogue → `REJECTED`, `rejection_reason: "MEDICATION_NOT_COVERED"`;
//! 5. otherwise `APPROVED`, with an `authorization_code`.
//!
//! The async sponsor later decides offline by rules 2 to 5, except that it cannot ask for a
//! missing indication, so rule 3 becomes `REJECTED` with `"INDICATION_REQUIRED"`.

use serde_json::Value;

use super::care::{AuthStatus, Authorization};
use super::data::{self, Mode};
use crate::time::rfc3339_now;

pub(super) const COVERAGE_INACTIVE: &str = "COVERAGE_INACTIVE";
pub(super) const MEDICATION_NOT_COVERED: &str = "MEDICATION_NOT_COVERED";
pub(super) const INDICATION_REQUIRED: &str = "INDICATION_REQUIRED";

/// What a decision step yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    PendingSponsor,
    PendingIndication,
    Approved,
    Rejected(&'static str),
}

/// What a decision rests on, read from the record and the seeded data.
#[derive(Clone, Copy, Debug)]
pub(super) struct Facts {
    pub(super) coverage_active: bool,
    pub(super) has_indication: bool,
    pub(super) all_covered: bool,
}

impl Facts {
    pub(super) fn of(a: &Authorization) -> Self {
        let covered = |item: &Value| {
            item.get("medication_code")
                .and_then(Value::as_str)
                .is_some_and(|code| data::medication(code).is_some())
        };
        Self {
            // Checked when the authorization was created; seeded data never changes.
            coverage_active: data::coverage_active(&a.beneficiary_id).unwrap_or(false),
            has_indication: a.indication.is_some(),
            all_covered: a.items.iter().all(covered),
        }
    }
}

/// The answer to the complete call.
pub(super) fn on_complete(mode: Mode, f: Facts) -> Decision {
    if mode == Mode::Async {
        Decision::PendingSponsor
    } else if !f.coverage_active {
        Decision::Rejected(COVERAGE_INACTIVE)
    } else if !f.has_indication {
        Decision::PendingIndication
    } else if !f.all_covered {
        Decision::Rejected(MEDICATION_NOT_COVERED)
    } else {
        Decision::Approved
    }
}

/// The async sponsor's own decision, made after the delay: always final.
pub(super) fn offline(f: Facts) -> Decision {
    match on_complete(Mode::Sync, f) {
        Decision::PendingIndication => Decision::Rejected(INDICATION_REQUIRED),
        d => d,
    }
}

/// Records `d` on the authorization.
pub(super) fn apply(a: &mut Authorization, d: Decision) {
    a.status = match d {
        Decision::PendingSponsor => AuthStatus::PendingSponsor,
        Decision::PendingIndication => AuthStatus::PendingIndication,
        Decision::Approved => {
            a.authorization_code = Some(format!("AUTH-SBX-{:06}", a.serial));
            a.decided_at = Some(rfc3339_now());
            AuthStatus::Approved
        }
        Decision::Rejected(reason) => {
            a.rejection_reason = Some(reason);
            a.decided_at = Some(rfc3339_now());
            AuthStatus::Rejected
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL_GOOD: Facts = Facts {
        coverage_active: true,
        has_indication: true,
        all_covered: true,
    };

    #[test]
    fn sync_sponsor_rules_apply_in_order() {
        let d = |f: Facts| on_complete(Mode::Sync, f);
        assert_eq!(d(ALL_GOOD), Decision::Approved);
        let expired = Facts {
            coverage_active: false,
            has_indication: false,
            all_covered: false,
        };
        assert_eq!(d(expired), Decision::Rejected(COVERAGE_INACTIVE));
        let no_indication = Facts {
            has_indication: false,
            all_covered: false,
            ..ALL_GOOD
        };
        assert_eq!(d(no_indication), Decision::PendingIndication);
        let uncovered = Facts {
            all_covered: false,
            ..ALL_GOOD
        };
        assert_eq!(d(uncovered), Decision::Rejected(MEDICATION_NOT_COVERED));
    }

    #[test]
    fn async_sponsor_defers_then_always_decides() {
        let expired = Facts {
            coverage_active: false,
            ..ALL_GOOD
        };
        assert_eq!(on_complete(Mode::Async, expired), Decision::PendingSponsor);
        assert_eq!(offline(ALL_GOOD), Decision::Approved);
        assert_eq!(offline(expired), Decision::Rejected(COVERAGE_INACTIVE));
        let no_indication = Facts {
            has_indication: false,
            ..ALL_GOOD
        };
        assert_eq!(offline(no_indication), Decision::Rejected(INDICATION_REQUIRED));
    }

    fn authorization(beneficiary: &str, indication: Option<&str>, code: &str) -> Authorization {
        Authorization {
            id: "pa-sbx-000007".into(),
            status: AuthStatus::Draft,
            sponsor: "sponsor-sandbox".into(),
            beneficiary_id: beneficiary.into(),
            indication: indication.map(str::to_owned),
            items: vec![json!({"medication_code": code})],
            authorization_code: None,
            rejection_reason: None,
            created_at: "2025-01-01T00:00:00Z".into(),
            completed_at: None,
            decided_at: None,
            serial: 7,
            mode: Mode::Sync,
        }
    }

    #[test]
    fn facts_come_from_the_seeded_data() {
        let f = Facts::of(&authorization("ben-sbx-0001", Some("J02"), "MED-SBX-0001"));
        assert!(f.coverage_active && f.has_indication && f.all_covered);
        let f = Facts::of(&authorization("ben-sbx-0010", None, "MED-OTHER"));
        assert!(!f.coverage_active && !f.has_indication && !f.all_covered);
    }

    #[test]
    fn applying_a_decision_sets_code_or_reason() {
        let mut a = authorization("ben-sbx-0001", Some("J02"), "MED-SBX-0001");
        apply(&mut a, Decision::Approved);
        assert_eq!(a.status, AuthStatus::Approved);
        assert_eq!(a.authorization_code.as_deref(), Some("AUTH-SBX-000007"));
        assert!(a.decided_at.is_some() && a.rejection_reason.is_none());

        let mut r = authorization("ben-sbx-0010", Some("J02"), "MED-SBX-0001");
        apply(&mut r, Decision::Rejected(COVERAGE_INACTIVE));
        assert_eq!(r.status, AuthStatus::Rejected);
        assert_eq!(r.rejection_reason, Some("COVERAGE_INACTIVE"));
        assert!(r.authorization_code.is_none());

        let mut p = authorization("ben-sbx-0001", None, "MED-SBX-0001");
        apply(&mut p, Decision::PendingIndication);
        assert_eq!(p.status, AuthStatus::PendingIndication);
        assert!(p.decided_at.is_none());
    }
}
