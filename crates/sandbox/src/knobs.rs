//! The fault-injection settings a test turns at run time, and their defaults.
//!
//! They live behind one mutex in [`crate::state::Shared`]; every request reads them once on arrival,
//! so a change applies to the next request, never to one already being answered.

use std::time::Duration;

use crate::partner::Partner;

/// Which side of a partner a request hits: its token endpoint(s) or its API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Token, login or refresh.
    Token,
    /// Everything else, including unknown paths.
    Api,
}

/// A burst of scripted failures: the next `remaining` requests of one kind answer `status`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fault {
    pub(crate) remaining: u32,
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
}

/// All run-time settings of one emulator.
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    /// Lifetime of tokens issued from now on (OAS: the access token's).
    pub(crate) token_ttl: Duration,
    pub(crate) api_delay: Duration,
    pub(crate) token_delay: Duration,
    pub(crate) api_fault: Option<Fault>,
    pub(crate) token_fault: Option<Fault>,
    /// Requests per client per 60 s; 0 means unlimited.
    pub(crate) api_per_min: u32,
    pub(crate) token_per_min: u32,
    /// The width of the rate windows: a minute, as the partners count, unless a test scales it.
    pub(crate) rate_window: Duration,
    /// Answer API requests with `RateLimit-Limit`, `-Remaining` and `-Reset` from the API window
    /// (none of the three partners does by default).
    pub(crate) announce_budget: bool,
}

/// OAS's sample token lives 7200 s (`exp - iat`); OAuth partners conventionally answer 3600 s.
const OAS_ACCESS_TTL: Duration = Duration::from_secs(7200);
const OAUTH_TTL: Duration = Duration::from_secs(3600);

/// Osigu's sandbox limits from its guide; the others publish none.
const OSIGU_API_PER_MIN: u32 = 50;
const OSIGU_TOKEN_PER_MIN: u32 = 10;

impl Knobs {
    pub(crate) fn defaults(p: Partner) -> Self {
        let (token_ttl, api_per_min, token_per_min) = match p {
            Partner::Ottimate => (OAUTH_TTL, 0, 0),
            Partner::Oas => (OAS_ACCESS_TTL, 0, 0),
            Partner::Osigu => (OAUTH_TTL, OSIGU_API_PER_MIN, OSIGU_TOKEN_PER_MIN),
        };
        Self {
            token_ttl,
            api_delay: Duration::ZERO,
            token_delay: Duration::ZERO,
            api_fault: None,
            token_fault: None,
            api_per_min,
            token_per_min,
            rate_window: crate::limits::WINDOW,
            announce_budget: false,
        }
    }

    pub(crate) fn delay(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Token => self.token_delay,
            Kind::Api => self.api_delay,
        }
    }

    /// Consumes one scripted failure of this kind, if any is left.
    pub(crate) fn take_fault(&mut self, kind: Kind) -> Option<Fault> {
        let slot = match kind {
            Kind::Token => &mut self.token_fault,
            Kind::Api => &mut self.api_fault,
        };
        let fault = (*slot)?;
        *slot = (fault.remaining > 1).then(|| Fault {
            remaining: fault.remaining - 1,
            ..fault
        });
        (fault.remaining > 0).then_some(fault)
    }

    pub(crate) fn script(&mut self, kind: Kind, n: u32, status: u16, retry_after: Option<u64>) {
        let fault = (n > 0).then_some(Fault {
            remaining: n,
            status,
            retry_after,
        });
        match kind {
            Kind::Token => self.token_fault = fault,
            Kind::Api => self.api_fault = fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripted_burst_is_consumed_exactly_n_times() {
        let mut k = Knobs::defaults(Partner::Ottimate);
        k.script(Kind::Api, 2, 503, Some(3));
        assert_eq!(k.take_fault(Kind::Token).map(|f| f.status), None);
        assert_eq!(k.take_fault(Kind::Api).map(|f| f.status), Some(503));
        assert_eq!(k.take_fault(Kind::Api).map(|f| f.retry_after), Some(Some(3)));
        assert!(k.take_fault(Kind::Api).is_none());
    }

    #[test]
    fn scripting_zero_failures_clears_the_burst() {
        let mut k = Knobs::defaults(Partner::Osigu);
        k.script(Kind::Token, 5, 500, None);
        k.script(Kind::Token, 0, 500, None);
        assert!(k.take_fault(Kind::Token).is_none());
    }

    #[test]
    fn only_osigu_is_limited_by_default() {
        assert_eq!(Knobs::defaults(Partner::Osigu).token_per_min, 10);
        assert_eq!(Knobs::defaults(Partner::Osigu).api_per_min, 50);
        assert_eq!(Knobs::defaults(Partner::Oas).api_per_min, 0);
        assert_eq!(Knobs::defaults(Partner::Oas).token_ttl, Duration::from_secs(7200));
    }
}
