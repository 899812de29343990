//! The one duration grammar of holdfast, for flags and configuration files alike.
//!
//! Two grammars used to live side by side: timeouts read `10m` as ten minutes, retention read
//! `6m` as six months. A silent switch either way would make retention delete snapshots or a
//! timeout fire months late, so the ambiguous `m` is refused with both spellings named:
//! `min` for minutes, `mo` for months. Units: `s`, `min`, `h`, `d`, `w`, `mo` (30 days), `y`
//! (365 days), alone or in sequence (`1y6mo`, `1h30min`); a bare number needs a unit, except
//! `0`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A length of time, to the second, written in holdfast's duration grammar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(u64);

const UNITS: &[(&str, u64)] = &[
    ("y", 365 * 86400),
    ("mo", 30 * 86400),
    ("w", 7 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("min", 60),
    ("s", 1),
];

impl Span {
    pub const fn from_secs(secs: u64) -> Span {
        Span(secs)
    }
    pub const fn from_mins(mins: u64) -> Span {
        Span(mins * 60)
    }
    pub const fn from_hours(hours: u64) -> Span {
        Span(hours * 3600)
    }
    pub const fn as_secs(self) -> u64 {
        self.0
    }
    pub const fn as_std(self) -> Duration {
        Duration::from_secs(self.0)
    }
    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0.min(i64::MAX as u64) as i64)
    }
}

impl From<Span> for Duration {
    fn from(s: Span) -> Duration {
        s.as_std()
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Span, String> {
        let s = text.trim();
        let example = "e.g. 30s, 10min, 2h, 4d, 2w, 6mo, 1y";
        if s.is_empty() {
            return Err(format!("an empty duration ({example})"));
        }
        if s == "0" {
            return Ok(Span(0));
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(format!("'{s}' is not a duration ({example})"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("'{s}': number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .len();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            if unit.is_empty() {
                return Err(format!(
                    "'{s}': {n} needs a unit: s, min, h, d, w, mo or y ({example})"
                ));
            }
            if unit == "m" {
                return Err(format!(
                    "'{s}' is ambiguous: write {n}min for minutes or {n}mo for months"
                ));
            }
            let Some((_, secs)) = UNITS.iter().find(|(u, _)| *u == unit) else {
                return Err(format!(
                    "'{s}': unknown unit '{unit}' (s, min, h, d, w, mo, y; {example})"
                ));
            };
            total = n
                .checked_mul(*secs)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("'{s}': too long"))?;
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    /// The shortest spelling in the grammar that reads back to the same span ("1y6mo",
    /// "90min", "36h").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut rest = self.0;
        for (unit, secs) in UNITS {
            // Weeks and months read oddly mixed with days ("1w3d"): keep days as days unless
            // the whole rest is weeks.
            if *unit == "w" && !rest.is_multiple_of(*secs) {
                continue;
            }
            if rest >= *secs {
                write!(f, "{}{unit}", rest / secs)?;
                rest %= secs;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<u64, String> {
        s.parse::<Span>().map(Span::as_secs)
    }

    #[test]
    fn units_and_sequences() {
        assert_eq!(p("30s"), Ok(30));
        assert_eq!(p("10min"), Ok(600));
        assert_eq!(p("2h"), Ok(7200));
        assert_eq!(p("4d"), Ok(4 * 86400));
        assert_eq!(p("2w"), Ok(14 * 86400));
        assert_eq!(p("6mo"), Ok(180 * 86400));
        assert_eq!(p("1y6mo"), Ok(545 * 86400));
        assert_eq!(p("1h30min"), Ok(5400));
        assert_eq!(p(" 0 "), Ok(0));
    }

    #[test]
    fn the_ambiguous_m_names_both_spellings() {
        let e = p("6m").unwrap_err();
        assert!(e.contains("6min") && e.contains("6mo"), "{e}");
        assert!(p("1h5m").unwrap_err().contains("5min"));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "45",
            "4x",
            "d",
            "1.5h",
            "-1d",
            "4 d",
            "99999999999999999999s",
        ] {
            assert!(p(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn display_reads_back() {
        assert_eq!(Span::from_secs(600).to_string(), "10min");
        assert_eq!(Span::from_secs(545 * 86400).to_string(), "1y6mo");
        assert_eq!(Span::from_secs(10 * 86400).to_string(), "10d");
        assert_eq!(Span::from_secs(14 * 86400).to_string(), "2w");
        assert_eq!(Span::from_secs(36 * 3600).to_string(), "1d12h");
    }

    proptest! {
        #[test]
        fn every_span_reads_back(secs in 0u64..(200 * 365 * 86400)) {
            let s = Span::from_secs(secs);
            prop_assert_eq!(s.to_string().parse::<Span>(), Ok(s));
        }
    }
}
