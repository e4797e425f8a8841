//! The chaos suite's environment variables, parsed strictly: a value that does not parse is an
//! error naming its variable, never a silent default (a typo in `CHAOS_SEED` must not replay
//! some other schedule, nor one in `CHAOS_MINUTES` run for 15 s and pass).
//!
//! | variable | value |
//! |---|---|
//! | `CHAOS_SEED` | the seed to replay (a whole number below 2^64); unset: from the clock |
//! | `CHAOS_MINUTES` | minutes per configuration (a number above 0, e.g. `0.5`); unset: 15 s |
//! | `CHAOS_INJECT` | a bug to inject as a negative control: `panic` |
//! | `CHAOS_DISTRUST_FORWARDED` | set (to anything): see [`crate::workload`] |
//!
//! An empty value counts as unset.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

/// `CHAOS_SEED`.
pub const SEED_ENV: &str = "CHAOS_SEED";
/// `CHAOS_MINUTES`.
pub const MINUTES_ENV: &str = "CHAOS_MINUTES";
/// `CHAOS_INJECT`.
pub const INJECT_ENV: &str = "CHAOS_INJECT";
/// `CHAOS_DISTRUST_FORWARDED`.
pub const DISTRUST_FORWARDED_ENV: &str = "CHAOS_DISTRUST_FORWARDED";

/// A bug the suite can inject so that a run must fail (a negative control).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// `panic`: one node runs with kvd's `KVD_FAILPOINT_PANIC` armed, a crash the harness did
    /// not cause.
    Panic,
}

impl Inject {
    /// Every injectable bug.
    pub const ALL: [Self; 1] = [Self::Panic];

    /// The value of `CHAOS_INJECT` that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Panic => "panic",
        }
    }
}

impl fmt::Display for Inject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The suite's settings from its environment variables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChaosSettings {
    seed: Option<u64>,
    minutes: Option<f64>,
    inject: Option<Inject>,
    distrust_forwarded: bool,
}

impl ChaosSettings {
    /// Reads the process environment; see [`ChaosSettings::from_lookup`].
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads the variables through `lookup`; fails, naming the variable, on a value that does
    /// not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, String> {
        let seed = match text(&lookup, SEED_ENV)? {
            None => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                format!("{SEED_ENV}={text:?}: expected a seed, a whole number from 0 to 2^64-1")
            })?),
        };
        let minutes = match text(&lookup, MINUTES_ENV)? {
            None => None,
            Some(text) => Some(
                text.parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m > 0.0)
                    .filter(|m| Duration::try_from_secs_f64(m * 60.0).is_ok())
                    .ok_or_else(|| {
                        format!(
                            "{MINUTES_ENV}={text:?}: expected a number of minutes above 0 \
                             (such as 1 or 0.5)"
                        )
                    })?,
            ),
        };
        let inject = match text(&lookup, INJECT_ENV)? {
            None => None,
            Some(text) => Some(
                Inject::ALL
                    .into_iter()
                    .find(|bug| bug.name() == text)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Inject::ALL.iter().map(|b| b.name()).collect();
                        format!(
                            "{INJECT_ENV}={text:?}: unknown bug to inject (known: {})",
                            known.join(", ")
                        )
                    })?,
            ),
        };
        Ok(Self {
            seed,
            minutes,
            inject,
            distrust_forwarded: lookup(DISTRUST_FORWARDED_ENV).is_some(),
        })
    }

    /// `CHAOS_SEED`, if set.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// `CHAOS_MINUTES`, if set.
    pub fn minutes(&self) -> Option<f64> {
        self.minutes
    }

    /// How long each configuration runs: `CHAOS_MINUTES`, or `default`.
    pub fn duration(&self, default: Duration) -> Duration {
        self.minutes
            .map_or(default, |minutes| Duration::from_secs_f64(minutes * 60.0))
    }

    /// `CHAOS_INJECT`, if set.
    pub fn inject(&self) -> Option<Inject> {
        self.inject
    }

    /// Whether `CHAOS_DISTRUST_FORWARDED` is set.
    pub fn distrust_forwarded(&self) -> bool {
        self.distrust_forwarded
    }
}

/// Variable `name` as trimmed text; `None` if unset or empty; an error if not UTF-8.
fn text(lookup: &impl Fn(&str) -> Option<OsString>, name: &str) -> Result<Option<String>, String> {
    let Some(value) = lookup(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok_or_else(|| format!("{name}={value:?}: not UTF-8"))?
        .trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(table: &[(&str, &str)]) -> Result<ChaosSettings, String> {
        ChaosSettings::from_lookup(|name| {
            table
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    #[test]
    fn nothing_set_means_defaults() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings, ChaosSettings::default());
        assert_eq!(
            settings.duration(Duration::from_secs(15)),
            Duration::from_secs(15)
        );
        let blank = [(SEED_ENV, ""), (MINUTES_ENV, " "), (INJECT_ENV, "")];
        assert_eq!(parse(&blank).unwrap(), ChaosSettings::default());
    }

    #[test]
    fn well_formed_values_are_read() {
        let settings = parse(&[
            (SEED_ENV, "42"),
            (MINUTES_ENV, "0.5"),
            (INJECT_ENV, "panic"),
            (DISTRUST_FORWARDED_ENV, "1"),
        ])
        .unwrap();
        assert_eq!(settings.seed(), Some(42));
        assert_eq!(settings.minutes(), Some(0.5));
        assert_eq!(
            settings.duration(Duration::from_secs(15)),
            Duration::from_secs(30)
        );
        assert_eq!(settings.inject(), Some(Inject::Panic));
        assert!(settings.distrust_forwarded());
        let max = u64::MAX.to_string();
        assert_eq!(parse(&[(SEED_ENV, &max)]).unwrap().seed(), Some(u64::MAX));
    }

    #[test]
    fn a_malformed_value_is_an_error_naming_its_variable() {
        let cases = [
            (SEED_ENV, "forty-two"),
            (SEED_ENV, "-1"),
            (SEED_ENV, "1.5"),
            (SEED_ENV, "18446744073709551616"),
            (MINUTES_ENV, "0"),
            (MINUTES_ENV, "-1"),
            (MINUTES_ENV, "ten"),
            (MINUTES_ENV, "NaN"),
            (MINUTES_ENV, "inf"),
            (MINUTES_ENV, "1e300"),
            (MINUTES_ENV, "1m"),
            (INJECT_ENV, "panik"),
            (INJECT_ENV, "PANIC"),
        ];
        for (name, value) in cases {
            let error = parse(&[(name, value)]).unwrap_err();
            assert!(
                error.starts_with(&format!("{name}=")),
                "{name}={value:?}: {error}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_an_error_naming_its_variable() {
        use std::os::unix::ffi::OsStringExt;
        for name in [SEED_ENV, MINUTES_ENV, INJECT_ENV] {
            let error = ChaosSettings::from_lookup(|asked| {
                (asked == name).then(|| OsString::from_vec(vec![b'1', 0xff]))
            })
            .unwrap_err();
            assert!(error.starts_with(&format!("{name}=")), "{error}");
        }
    }
}
