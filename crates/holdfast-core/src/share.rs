//! Shares of a whole, as users write them: `20%` or `1/7`. One parser for the flags and the
//! configuration file (`--repack-threshold` and `repack_threshold`, `--read-data-subset` and
//! `read_data_subset` used to be parsed by four functions that disagreed on a bare number).

use std::fmt;
use std::str::FromStr;

/// A share between 0 and 1 inclusive.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Share(f64);

impl Share {
    pub const fn fraction(self) -> f64 {
        self.0
    }
    /// 20%: prune's default repack threshold.
    pub const fn repack_default() -> Share {
        Share(0.2)
    }
}

impl FromStr for Share {
    type Err = String;

    fn from_str(text: &str) -> Result<Share, String> {
        let s = text.trim();
        let bad =
            || format!("'{s}' is not a share: write a percentage like 20% or a fraction like 1/7");
        let f = if let Some(p) = s.strip_suffix('%') {
            p.trim().parse::<f64>().map_err(|_| bad())? / 100.0
        } else if let Some((n, d)) = s.split_once('/') {
            match (n.trim().parse::<u64>(), d.trim().parse::<u64>()) {
                (Ok(n), Ok(d)) if d > 0 => n as f64 / d as f64,
                _ => return Err(bad()),
            }
        } else {
            return Err(bad());
        };
        if !(0.0..=1.0).contains(&f) {
            return Err(format!("'{s}' must be between 0% and 100%"));
        }
        Ok(Share(f))
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", (self.0 * 1e6).round() / 1e4)
    }
}

/// The share of the data a check reads: more than nothing, at most everything.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Subset(Share);

impl Subset {
    pub const fn fraction(self) -> f64 {
        self.0 .0
    }
}

impl FromStr for Subset {
    type Err = String;
    fn from_str(s: &str) -> Result<Subset, String> {
        let share: Share = s.parse()?;
        if share.0 <= 0.0 {
            return Err(format!("'{}' reads nothing: give more than 0%", s.trim()));
        }
        Ok(Subset(share))
    }
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Share);
serde_via_str!(Subset);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_fractions() {
        assert_eq!("20%".parse::<Share>().unwrap().fraction(), 0.2);
        assert_eq!("0%".parse::<Share>().unwrap().fraction(), 0.0);
        assert!(("1/7".parse::<Share>().unwrap().fraction() - 1.0 / 7.0).abs() < 1e-12);
        for bad in ["0.2", "20", "120%", "-5%", "1/0", "lots", "2/1"] {
            assert!(bad.parse::<Share>().is_err(), "{bad} parsed");
        }
        assert!("0%".parse::<Subset>().is_err());
        assert_eq!("5%".parse::<Subset>().unwrap().fraction(), 0.05);
        assert_eq!("12.5%".parse::<Share>().unwrap().to_string(), "12.5%");
    }
}
