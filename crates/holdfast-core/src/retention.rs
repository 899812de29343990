//! Which snapshots a retention policy keeps, and why.
//!
//! A pure function of the snapshots, the policy and nothing else, so that `forget --dry-run`
//! shows exactly what a real run would do. The rules follow the convention restic and borg
//! users know: within each group (host, paths, and application when recorded), snapshots are
//! taken newest first; `--keep-daily 7` keeps the newest snapshot of each of the 7 most recent
//! days that have one; rules add up, and a snapshot is kept if any rule keeps it.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Local, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    /// Keep everything newer than this, measured back from the group's newest snapshot (not
    /// from now, so that a host that stopped backing up does not lose its last snapshots).
    #[serde(default, with = "opt_duration")]
    pub within: Option<Duration>,
    /// Keep every snapshot carrying one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshots with one of these tags stand outside the policy: always kept, and not
    /// counted by the rules (a backup taken before an upgrade must not push a daily one out).
    #[serde(default)]
    pub protected_tags: Vec<String>,
}

/// Tags that `forget` leaves alone unless asked: backups taken before an upgrade.
pub const PRE_UPGRADE_TAG: &str = "pre-upgrade";

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.hourly.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
            && self.yearly.is_none()
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub id: SnapshotId,
    pub time: DateTime<Utc>,
    pub group: String,
    pub keep: bool,
    /// The rules that keep it (empty when it goes).
    pub reasons: Vec<String>,
}

/// What a snapshot is grouped by: host, paths and the application when one is recorded.
pub fn group_key(s: &Snapshot) -> String {
    let app = s
        .extra
        .get("app")
        .and_then(|a| a.get("name").or(Some(a)))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let mut key = format!("host={} paths={}", s.hostname, s.paths.join(","));
    if !app.is_empty() {
        key.push_str(&format!(" app={app}"));
    }
    key
}

/// Applies `policy` to `snaps`; returns one decision per snapshot, newest first in each group.
pub fn apply(snaps: &[(SnapshotId, Snapshot)], policy: &Policy) -> Vec<Decision> {
    let mut groups: BTreeMap<String, Vec<&(SnapshotId, Snapshot)>> = BTreeMap::new();
    for s in snaps {
        groups.entry(group_key(&s.1)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (group, mut members) in groups {
        members.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        let newest = members.first().map(|m| m.1.time);
        type Bucket = fn(&DateTime<Local>) -> String;
        let rules: [(&str, Option<u32>, Bucket); 5] = [
            ("hourly", policy.hourly, |t| {
                format!(
                    "{}-{:02}-{:02} {:02}",
                    t.year(),
                    t.month(),
                    t.day(),
                    t.hour()
                )
            }),
            ("daily", policy.daily, |t| {
                format!("{}-{:02}-{:02}", t.year(), t.month(), t.day())
            }),
            ("weekly", policy.weekly, |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }),
            ("monthly", policy.monthly, |t| {
                format!("{}-{:02}", t.year(), t.month())
            }),
            ("yearly", policy.yearly, |t| format!("{}", t.year())),
        ];
        let mut seen: Vec<(Option<String>, u32)> = rules
            .iter()
            .map(|(_, n, _)| (None, n.unwrap_or(0)))
            .collect();
        let (protected, members): (Vec<_>, Vec<_>) = members
            .into_iter()
            .partition(|m| m.1.tags.iter().any(|t| policy.protected_tags.contains(t)));
        for (id, s) in protected.iter().map(|m| (&m.0, &m.1)) {
            let tag = s
                .tags
                .iter()
                .find(|t| policy.protected_tags.contains(t))
                .expect("partitioned on it");
            out.push(Decision {
                id: *id,
                time: s.time,
                group: group.clone(),
                keep: true,
                reasons: vec![format!("protected tag {tag}")],
            });
        }
        for (i, (id, s)) in members.iter().map(|m| (&m.0, &m.1)).enumerate() {
            let mut reasons = Vec::new();
            if policy.last.map(|n| (i as u32) < n).unwrap_or(false) {
                reasons.push(format!("last {}", policy.last.unwrap()));
            }
            let local = s.time.with_timezone(&Local);
            for (r, (name, n, bucket)) in rules.iter().enumerate() {
                if n.is_none() {
                    continue;
                }
                let b = bucket(&local);
                let (last_bucket, left) = &mut seen[r];
                if *left > 0 && last_bucket.as_deref() != Some(b.as_str()) {
                    *left -= 1;
                    reasons.push(format!("{name} {b}"));
                    *last_bucket = Some(b);
                }
            }
            if let (Some(d), Some(newest)) = (policy.within, newest) {
                if s.time >= newest - d {
                    reasons.push(format!("within {}", format_duration(d)));
                }
            }
            for t in &policy.tags {
                if s.tags.contains(t) {
                    reasons.push(format!("tag {t}"));
                }
            }
            out.push(Decision {
                id: *id,
                time: s.time,
                group: group.clone(),
                keep: !reasons.is_empty(),
                reasons,
            });
        }
    }
    out
}

/// Parses `4d`, `36h`, `2w`, `1y6m`, `90m` is minutes only when written `90min`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::zero();
    let mut num = String::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap();
        if c.is_ascii_digit() {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a duration like 4d, 36h, 2w, 6m or 1y"))?;
        num.clear();
        let (unit, len) = if rest.starts_with("min") {
            ("min", 3)
        } else {
            (&rest[..1], 1)
        };
        total += match unit {
            "min" => Duration::minutes(n),
            "h" => Duration::hours(n),
            "d" => Duration::days(n),
            "w" => Duration::weeks(n),
            "m" => Duration::days(30 * n),
            "y" => Duration::days(365 * n),
            _ => {
                return Err(format!(
                    "'{s}': unknown unit '{unit}' (use min, h, d, w, m, y)"
                ))
            }
        };
        rest = &rest[len..];
    }
    if !num.is_empty() {
        return Err(format!("'{s}': a number needs a unit (min, h, d, w, m, y)"));
    }
    Ok(total)
}

pub fn format_duration(d: Duration) -> String {
    let h = d.num_hours();
    if h % 24 == 0 {
        format!("{}d", h / 24)
    } else {
        format!("{h}h")
    }
}

mod opt_duration {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;

    fn snap(days_ago: i64, hours: i64, host: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let time = Utc::now() - Duration::days(days_ago) - Duration::hours(hours);
        let s = Snapshot {
            time,
            tree: BlobId([0; 32]),
            paths: vec!["/srv/dss/data".into()],
            hostname: host.into(),
            username: "u".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            program_version: "t".into(),
            layout: Default::default(),
            root: None,
            summary: Default::default(),
            warnings: vec![],
            consistency: None,
            attachments: Vec::new(),
            extra: Default::default(),
        };
        (SnapshotId::random(), s)
    }

    fn kept(d: &[Decision]) -> usize {
        d.iter().filter(|x| x.keep).count()
    }

    #[test]
    fn daily_keeps_newest_of_each_day() {
        // Two snapshots a day for 10 days (at 00:30 and 12:30 local-ish offsets).
        let mut snaps = Vec::new();
        for day in 0..10 {
            snaps.push(snap(day, 1, "a", &[]));
            snaps.push(snap(day, 13, "a", &[]));
        }
        let d = apply(
            &snaps,
            &Policy {
                daily: Some(4),
                ..Default::default()
            },
        );
        assert_eq!(kept(&d), 4);
        // Every kept one is the newest of its day.
        for k in d.iter().filter(|x| x.keep) {
            let day = k.time.with_timezone(&Local).date_naive();
            assert!(!d
                .iter()
                .any(|o| o.time > k.time && o.time.with_timezone(&Local).date_naive() == day));
        }
    }

    #[test]
    fn rules_add_up_and_groups_are_separate() {
        let mut snaps: Vec<_> = (0..30).map(|i| snap(i, 0, "a", &[])).collect();
        snaps.extend((0..5).map(|i| snap(i, 0, "b", &[])));
        snaps.push(snap(100, 0, "a", &["pre-upgrade"]));
        let p = Policy {
            last: Some(2),
            weekly: Some(2),
            tags: vec!["pre-upgrade".into()],
            ..Default::default()
        };
        let d = apply(&snaps, &p);
        let a: Vec<_> = d
            .iter()
            .filter(|x| x.group.contains("host=a") && x.keep)
            .collect();
        let b: Vec<_> = d
            .iter()
            .filter(|x| x.group.contains("host=b") && x.keep)
            .collect();
        assert!(b.len() >= 2 && b.len() <= 3, "{b:?}");
        assert!(a
            .iter()
            .any(|x| x.reasons.iter().any(|r| r == "tag pre-upgrade")));
        assert!(a.len() >= 3 && a.len() <= 5, "{a:?}");
        assert!(d.iter().filter(|x| !x.keep).all(|x| x.reasons.is_empty()));
    }

    #[test]
    fn protected_tags_stand_outside_the_policy() {
        // Daily snapshots; the newest day also has a pre-upgrade one.
        let mut snaps: Vec<_> = (0..5).map(|i| snap(i, 0, "a", &[])).collect();
        let pre = snap(0, 0, "a", &["pre-upgrade"]);
        let pre_id = pre.0;
        snaps.push(pre);
        let mut p = Policy {
            daily: Some(2),
            protected_tags: vec![PRE_UPGRADE_TAG.into()],
            ..Default::default()
        };
        let d = apply(&snaps, &p);
        let kept: Vec<_> = d.iter().filter(|x| x.keep).collect();
        assert_eq!(
            kept.len(),
            3,
            "two dailies plus the protected one: {kept:?}"
        );
        let pre_d = d.iter().find(|x| x.id == pre_id).unwrap();
        assert_eq!(pre_d.reasons, ["protected tag pre-upgrade"]);
        // Asked to include them, it competes for the daily slots like any other.
        p.protected_tags.clear();
        let d = apply(&snaps, &p);
        assert_eq!(d.iter().filter(|x| x.keep).count(), 2);
    }

    #[test]
    fn within_is_relative_to_the_newest() {
        let snaps: Vec<_> = (10..20).map(|i| snap(i, 0, "a", &[])).collect();
        let d = apply(
            &snaps,
            &Policy {
                within: Some(Duration::days(4)),
                ..Default::default()
            },
        );
        assert_eq!(
            kept(&d),
            5,
            "newest is 10 days old; 10..=14 are within 4 days of it"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("4d").unwrap(), Duration::days(4));
        assert_eq!(parse_duration("1d12h").unwrap(), Duration::hours(36));
        assert_eq!(parse_duration("90min").unwrap(), Duration::minutes(90));
        assert!(parse_duration("4").is_err());
        assert!(parse_duration("4x").is_err());
        assert!(parse_duration("").is_err());
    }
}
