//! Which snapshots a retention policy keeps, and why.
//!
//! A pure function of the snapshots, the policy and nothing else, so that `forget --dry-run`
//! shows exactly what a real run would do. The rules follow the convention restic and borg
//! users know: within each group (host, paths, and application when recorded), snapshots are
//! taken newest first; `--keep-daily 7` keeps the newest snapshot of each of the 7 most recent
//! days that have one; rules add up, and a snapshot is kept if any rule keeps it.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Local, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::id::SnapshotId;
use crate::share::Share;
use crate::snapshot::Snapshot;
use crate::span::Span;

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
    #[serde(default)]
    pub within: Option<Span>,
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
                if s.time >= newest - d.as_chrono() {
                    reasons.push(format!("within {d}"));
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

/// A forget run's rules, the same whether they come from `forget --keep-* [--prune]` or from
/// an application's `[retention]` table (whose keys are these fields' names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ForgetRules {
    /// Keep the N newest snapshots
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_hourly: Option<u32>,
    /// ... of each of the last N days
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_daily: Option<u32>,
    /// ... of each of the last N ISO weeks
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_weekly: Option<u32>,
    /// ... of each of the last N months
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_monthly: Option<u32>,
    /// ... of each of the last N years
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within DURATION of the group's newest (e.g. 4d, 36h, 2w, 6mo, 1y;
    /// `m` is refused as ambiguous: min or mo)
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION"))]
    pub keep_within: Option<Span>,
    /// Keep every snapshot with this tag (repeatable)
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long = "keep-tag", value_name = "TAG"))]
    pub keep_tags: Vec<String>,
    /// Apply the policy to snapshots tagged `pre-upgrade` too (by default they are always kept
    /// and not counted)
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub include_pre_upgrade: bool,
    /// Prune afterwards
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long))]
    pub prune: bool,
    /// With prune: repack packs with at least this share unused
    #[serde(default = "Share::repack_default")]
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "20%", value_name = "PERCENT")
    )]
    pub repack_threshold: Share,
}

impl Default for ForgetRules {
    fn default() -> Self {
        ForgetRules {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            keep_tags: Vec::new(),
            include_pre_upgrade: false,
            prune: false,
            repack_threshold: Share::repack_default(),
        }
    }
}

impl ForgetRules {
    pub fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tags.clone(),
            protected_tags: if self.include_pre_upgrade {
                Vec::new()
            } else {
                vec![PRE_UPGRADE_TAG.to_string()]
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use chrono::Duration;

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
            replaces: None,
            rewrites: Vec::new(),
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
                within: Some(Span::from_hours(96)),
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
        let r: ForgetRules = serde_json::from_str(r#"{"keep_within": "4d"}"#).unwrap();
        assert_eq!(r.policy().within, Some(Span::from_hours(96)));
        assert_eq!(r.repack_threshold, Share::repack_default());
        assert!(serde_json::from_str::<ForgetRules>(r#"{"keep_within": "6m"}"#).is_err());
    }
}
