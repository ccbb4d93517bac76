//! Config reloads: how many were applied or refused, and when the config in force was last
//! loaded successfully (start-up counts), as Prometheus's own `..._config_last_reload_*` do.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The reload handles, resolved with the registry.
#[derive(Debug, Clone)]
pub struct ReloadMetrics {
    ok: IntCounter,
    error: IntCounter,
    last_success: Gauge,
    /// 1 when the last load (start-up or reload) was applied, 0 after a refused reload: the file
    /// on disk is not what runs.
    last_ok: IntGauge,
}

impl ReloadMetrics {
    pub(crate) fn register(registry: &Registry) -> Self {
        let reloads = IntCounterVec::new(
            Opts::new(
                "tollgate_config_reloads_total",
                "Config reloads (SIGHUP, POST /reload) by result: ok (applied) or error (invalid; nothing changed).",
            ),
            &["result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(reloads.clone()))
            .expect("registered once");
        let last_success = Gauge::with_opts(Opts::new(
            "tollgate_config_last_reload_success_timestamp_seconds",
            "Unix time the config in force was loaded: start-up, then each applied reload.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(last_success.clone()))
            .expect("registered once");
        let last_ok = IntGauge::with_opts(Opts::new(
            "tollgate_config_last_reload_successful",
            "1 when the last config load (start-up or reload) was applied, 0 after a refused reload.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(last_ok.clone()))
            .expect("registered once");
        Self {
            last_ok,
            ok: reloads.with_label_values(&["ok"]),
            error: reloads.with_label_values(&["error"]),
            last_success,
        }
    }

    /// A config was put in force at `unix_seconds` (start-up or a reload; only a reload counts).
    pub fn loaded(&self, unix_seconds: f64, reload: bool) {
        self.last_success.set(unix_seconds);
        self.last_ok.set(1);
        if reload {
            self.ok.inc();
        }
    }

    /// A reload was refused: nothing changed.
    pub fn refused(&self) {
        self.last_ok.set(0);
        self.error.inc();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_both_results_and_keeps_the_last_success() {
        let metrics = crate::Metrics::new("t");
        let r = metrics.reloads();
        r.loaded(1_700_000_000.0, false);
        r.refused();
        assert!(metrics
            .render()
            .contains("tollgate_config_last_reload_successful 0"));
        r.loaded(1_700_000_100.0, true);
        let text = metrics.render();
        assert!(
            text.contains("tollgate_config_last_reload_successful 1"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_config_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_config_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_config_last_reload_success_timestamp_seconds 1700000100"),
            "{text}"
        );
    }
}
