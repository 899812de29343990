//! Pings to a monitoring service when a run starts and ends (healthchecks.io, and the services
//! that speak its protocol: a self-hosted Healthchecks, Uptime Kuma's push monitors, Cronitor's
//! healthchecks-compatible URLs).
//!
//! The value of a ping is that its absence is noticed: a backup that never ran sends nothing,
//! which no hook command can report. So the ping is a plain setting, not a script to write.
//! `URL/start` when a run begins, `URL` when it succeeds, `URL/fail` when it fails, each a POST
//! whose body is a short report, all carrying the same `rid` so the service pairs start and end
//! (and measures the duration) even when two runs overlap. A ping that fails is a warning of
//! the run; it never changes the run's result.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::runlog::{RunRecord, RunResult};

/// How much of a report a ping carries (healthchecks keeps the first 100 kB of a body).
const MAX_BODY: usize = 10_000;

/// An `http://` or `https://` URL to ping, checked when the configuration is read.
#[derive(Clone, PartialEq, Eq)]
pub struct PingUrl(String);

impl PingUrl {
    pub fn new(url: &str) -> Result<PingUrl, String> {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("ping_url '{url}' must start with http:// or https://"))?;
        if rest.is_empty() || rest.starts_with('/') || url.contains(char::is_whitespace) {
            return Err(format!("ping_url '{url}' names no host"));
        }
        Ok(PingUrl(url.to_string()))
    }

    /// Scheme and host only: the rest of a ping URL (a check's UUID) is a secret of sorts, as
    /// anyone who has it can report a backup as done.
    pub fn host(&self) -> &str {
        let after = self.0.find("://").map(|i| i + 3).unwrap_or(0);
        let end = self.0[after..]
            .find('/')
            .map(|i| after + i)
            .unwrap_or(self.0.len());
        &self.0[..end]
    }
}

impl std::fmt::Debug for PingUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PingUrl({}/…)", self.host())
    }
}

impl<'de> Deserialize<'de> for PingUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PingUrl::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Which moment of a run a ping reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Start,
    Success,
    Failure,
}

impl Event {
    fn suffix(self) -> &'static str {
        match self {
            Event::Start => "/start",
            Event::Success => "",
            Event::Failure => "/fail",
        }
    }

    /// The end of a run: a run with warnings is a success (the snapshot was written).
    pub fn end_of(rec: &RunRecord) -> Event {
        if rec.result == RunResult::Failure {
            Event::Failure
        } else {
            Event::Success
        }
    }
}

/// The run id shared by a run's start and end pings: a UUID derived from the application and
/// the start time, so the end needs nothing carried over from the start.
pub fn run_id(app: &str, start: DateTime<Utc>) -> String {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        (salt, app, start.timestamp_nanos_opt().unwrap_or_default()).hash(&mut h);
        h.finish()
    };
    let (a, b) = (half(0), half(1));
    // Shaped as a version 4 UUID, which is what the service accepts.
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// The body of an end ping: what a person reading the monitoring service's log needs.
pub fn report(rec: &RunRecord) -> String {
    let mut s = format!("holdfast {} of {}: {}", rec.kind, rec.app, rec.result);
    if let Some(snap) = &rec.snapshot {
        let _ = write!(s, ", snapshot {}", &snap[..snap.len().min(8)]);
    }
    let _ = write!(
        s,
        ", exit code {}, {:.1} s, {} bytes added",
        rec.exit_code,
        rec.duration_secs(),
        rec.bytes_added
    );
    if let Some(d) = rec.downtime_secs {
        let _ = write!(s, ", service down {d:.1} s");
    }
    s.push('\n');
    if let Some(e) = &rec.error {
        let _ = writeln!(s, "error: {e}");
    }
    for w in &rec.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if s.len() > MAX_BODY {
        let mut cut = MAX_BODY;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[cut]\n");
    }
    s
}

/// Sends one ping; tries twice, 10 s each, as a monitoring service may hiccup. The error
/// names the host, not the whole URL.
pub fn ping(url: &PingUrl, event: Event, rid: &str, body: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let target = format!("{}{}?rid={rid}", url.0, event.suffix());
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        match agent
            .post(&target)
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(body)
        {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
            Err(e) => last = e.to_string(),
        }
    }
    let what = match event {
        Event::Start => "start",
        Event::Success => "success",
        Event::Failure => "failure",
    };
    Err(format!("ping ({what}) to {}/… failed: {last}", url.host()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_shown_whole() {
        let u = PingUrl::new("https://hc-ping.com/0f3c-secret/").unwrap();
        assert_eq!(u.host(), "https://hc-ping.com");
        assert!(!format!("{u:?}").contains("secret"));
        assert!(PingUrl::new("hc-ping.com/x").is_err());
        assert!(PingUrl::new("ftp://x/y").is_err());
        assert!(PingUrl::new("https:///x").is_err());
        assert!(PingUrl::new("http://a b/").is_err());
        assert_eq!(
            PingUrl::new("http://127.0.0.1:9/p").unwrap().host(),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn run_ids_pair_a_start_with_its_end_and_look_like_uuids() {
        let t = Utc::now();
        let id = run_id("design", t);
        assert_eq!(id, run_id("design", t));
        assert_ne!(id, run_id("govern", t));
        assert_ne!(id, run_id("design", t + chrono::Duration::nanoseconds(1)));
        let parts: Vec<_> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
        assert_eq!(&id[14..15], "4");
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_report_says_the_result_and_stays_short() {
        let rec = RunRecord {
            app: "design".into(),
            kind: "run".into(),
            result: RunResult::Failure,
            exit_code: 7,
            error: Some("data directory missing".into()),
            warnings: vec!["x".repeat(20_000)],
            ..Default::default()
        };
        let r = report(&rec);
        assert!(r.starts_with("holdfast run of design: failure"), "{r}");
        assert!(r.contains("error: data directory missing"));
        assert!(r.len() <= MAX_BODY + 10);
        assert_eq!(Event::end_of(&rec), Event::Failure);
    }
}
