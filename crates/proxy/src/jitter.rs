//! [`Jitter`]: the random draw that spreads retries and token refreshes, so replicas and callers
//! do not move in lockstep. One type for every such draw (retries, token refreshes and backoffs,
//! webhook redeliveries, the Redis reconnect), so a test can fix the request path's and the token
//! cache's and get exact waits instead of racing a random one. A bottom module: it imports
//! nothing of the crate.

/// Where jitter draws come from: random, unless a test fixes it
/// ([`crate::Gateway::new_with_jitter`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Jitter {
    /// A fresh random draw each time.
    #[default]
    Random,
    /// Always this draw (clamped to [0, 1]; NaN is taken as 0.5): waits become exact, for tests.
    Fixed(f64),
}

impl Jitter {
    /// One draw in [0, 1].
    pub(crate) fn draw(self) -> f64 {
        match self {
            Jitter::Random => rand::random::<f64>(),
            // A NaN would panic in `Duration::mul_f64` wherever the draw scales a wait.
            Jitter::Fixed(draw) if draw.is_nan() => 0.5,
            Jitter::Fixed(draw) => draw.clamp(0.0, 1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_draw_is_always_itself_within_the_unit_interval() {
        assert_eq!(Jitter::Fixed(0.25).draw(), 0.25);
        assert_eq!(Jitter::Fixed(0.25).draw(), 0.25);
        assert_eq!(Jitter::Fixed(7.0).draw(), 1.0);
        assert_eq!(Jitter::Fixed(-1.0).draw(), 0.0);
        assert_eq!(Jitter::Fixed(f64::NAN).draw(), 0.5);
        let random = Jitter::default().draw();
        assert!((0.0..=1.0).contains(&random), "{random}");
    }
}
