//! Schedules: cron expressions, their next run times, and the units that run them.
//!
//! The configuration speaks cron (`15 6 * * 1-5`, as in the vendor's example), parsed by
//! croner. Installed jobs run under systemd (a timer with `Persistent=true` catches up a run
//! missed while the machine was off, once) or cron; `holdfast daemon` runs them itself in
//! containers. systemd does not read cron syntax, so expressions are translated into
//! `OnCalendar=` with every field spelled out as an explicit list, which is always exact.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Local, TimeZone};
use croner::Cron;

use crate::error::{Error, Result};

/// Parses a 5-field cron expression.
pub fn parse(expr: &str) -> std::result::Result<Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err(format!(
            "'{expr}': expected 5 fields (minute hour day-of-month month day-of-week), e.g. \"15 6 * * 1-5\""
        ));
    }
    Cron::from_str(expr).map_err(|e| format!("'{expr}': {e}"))
}

/// The next `n` run times after `from`, in local time.
pub fn next_runs(expr: &str, from: DateTime<Local>, n: usize) -> Result<Vec<DateTime<Local>>> {
    let cron = parse(expr).map_err(Error::Config)?;
    let mut out = Vec::with_capacity(n);
    let mut t = from;
    for _ in 0..n {
        match cron.find_next_occurrence(&t, false) {
            Ok(next) => {
                out.push(next);
                t = next;
            }
            Err(_) => break,
        }
    }
    Ok(out)
}

/// The first scheduled time after `since` if it is already past at `now`: a run that was
/// missed (the machine or the daemon was down) and is due once.
pub fn missed_since<Tz: TimeZone>(
    expr: &str,
    since: &DateTime<Tz>,
    now: &DateTime<Tz>,
) -> Option<DateTime<Tz>> {
    let cron = parse(expr).ok()?;
    let next = cron.find_next_occurrence(since, false).ok()?;
    (next <= *now).then_some(next)
}

/// Expands one cron field into the values it matches, within `lo..=hi`.
fn expand(field: &str, lo: u32, hi: u32, names: &[&str]) -> std::result::Result<Vec<u32>, String> {
    let value = |s: &str| -> std::result::Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + lo);
        }
        s.parse::<u32>()
            .map_err(|_| format!("'{s}' is not a number"))
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("bad step in '{item}'"))?,
            ),
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if item.contains('/') { hi } else { v })
        };
        if step == 0 || a > b || a < lo || b > hi {
            return Err(format!("'{item}' is out of range {lo}-{hi}"));
        }
        out.extend((a..=b).step_by(step as usize));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn join(v: &[u32], width: usize) -> String {
    v.iter()
        .map(|n| format!("{n:0width$}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Translates a cron expression into a systemd `OnCalendar=` value.
pub fn on_calendar(expr: &str) -> std::result::Result<String, String> {
    parse(expr)?;
    let f: Vec<&str> = expr.split_whitespace().collect();
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let minutes = expand(f[0], 0, 59, &[])?;
    let hours = expand(f[1], 0, 23, &[])?;
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let dom_any = f[2] == "*";
    let dow_any = f[4] == "*";
    if !dom_any && !dow_any {
        return Err(format!(
            "'{expr}': restricting both day of month and day of week means either in cron, which \
             systemd cannot express; use holdfast daemon or --cron"
        ));
    }
    let dom = if dom_any {
        "*".to_string()
    } else {
        join(&expand(f[2], 1, 31, &[])?, 2)
    };
    let month = if f[3] == "*" {
        "*".to_string()
    } else {
        join(&expand(f[3], 1, 12, &months)?, 2)
    };
    let dow = if dow_any {
        String::new()
    } else {
        let mut d: Vec<u32> = expand(f[4], 0, 7, &DAYS.map(|d| d))?
            .into_iter()
            .map(|d| d % 7)
            .collect();
        d.sort();
        d.dedup();
        let names: Vec<&str> = d.iter().map(|&i| DAYS[i as usize]).collect();
        format!("{} ", names.join(","))
    };
    Ok(format!(
        "{dow}*-{month}-{dom} {}:{}:00",
        join(&hours, 2),
        join(&minutes, 2)
    ))
}

/// The systemd service and timer that run `holdfast run --app NAME`.
pub fn systemd_units(
    app: &str,
    expr: &str,
    exe: &Path,
    config: &Path,
) -> std::result::Result<(String, String), String> {
    let cal = on_calendar(expr)?;
    let service = format!(
        "# Written by `holdfast schedule install`.\n\
         [Unit]\n\
         Description=holdfast backup of {app}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={} --config {} run --app {app}\n\
         # A line of progress in the journal every five minutes of a long run.\n\
         Environment=HOLDFAST_PROGRESS_INTERVAL=5min\n\
         # Let an interrupted run start the application again before it is killed.\n\
         KillMode=mixed\n\
         TimeoutStopSec=15min\n\
         Nice=10\n\
         IOSchedulingClass=idle\n",
        exe.display(),
        config.display()
    );
    let timer = format!(
        "# Written by `holdfast schedule install`; cron: {expr}\n\
         [Unit]\n\
         Description=holdfast backup of {app} ({expr})\n\n\
         [Timer]\n\
         OnCalendar={cal}\n\
         # A run missed while the machine was off is caught up once at boot.\n\
         Persistent=true\n\n\
         [Install]\n\
         WantedBy=timers.target\n"
    );
    Ok((service, timer))
}

/// A crontab line (for /etc/cron.d) running the job.
pub fn cron_line(app: &str, expr: &str, exe: &Path, config: &Path) -> String {
    format!(
        "{expr} root {} --config {} --quiet run --app {app}\n",
        exe.display(),
        config.display()
    )
}

/// The files that run `jobs` on a schedule: one cron file, or a systemd service and timer per
/// application, in `dir` (default `/etc/cron.d` or `/etc/systemd/system`), and the command
/// that activates them.
pub fn unit_files(
    jobs: &[(String, String)],
    cron: bool,
    dir: Option<&Path>,
    exe: &Path,
    config: &Path,
) -> Result<(Vec<(PathBuf, String)>, String)> {
    let mut files = Vec::new();
    if cron {
        let dir = dir.unwrap_or(Path::new("/etc/cron.d"));
        let mut text = String::from(
            "# Written by `holdfast schedule install --cron`.\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        );
        for (name, expr) in jobs {
            text.push_str(&cron_line(name, expr, exe, config));
        }
        files.push((dir.join("holdfast"), text));
        return Ok((files, "cron picks the file up by itself".into()));
    }
    let dir = dir.unwrap_or(Path::new("/etc/systemd/system"));
    for (name, expr) in jobs {
        let (service, timer) = systemd_units(name, expr, exe, config).map_err(Error::Config)?;
        files.push((dir.join(format!("holdfast-{name}.service")), service));
        files.push((dir.join(format!("holdfast-{name}.timer")), timer));
    }
    let enable = format!(
        "systemctl daemon-reload && systemctl enable --now {}",
        jobs.iter()
            .map(|(n, _)| format!("holdfast-{n}.timer"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok((files, enable))
}

/// A run that was due while nobody ran the schedule: the job, and when it was due.
pub type Missed = (String, DateTime<Local>);

/// When each scheduled job is next due, for a process that runs the schedules itself: a run
/// missed while it was down is due at once, once; runs never overlap, and a due time that
/// passed during a run is caught up once, when it ends.
pub struct Timetable {
    due: Vec<(String, String, DateTime<Local>)>,
}

impl Timetable {
    /// The timetable at `now`, from when each job last started (from the run log); also
    /// returns, for each missed run, the job and the time it was due.
    pub fn new(
        jobs: &[(String, String)],
        last_start: &dyn Fn(&str) -> Option<DateTime<chrono::Utc>>,
        now: DateTime<Local>,
    ) -> Result<(Timetable, Vec<Missed>)> {
        let mut due = Vec::new();
        let mut missed = Vec::new();
        for (name, expr) in jobs {
            let last = last_start(name);
            let when = match last.and_then(|l| missed_since(expr, &l.with_timezone(&Local), &now)) {
                Some(m) => {
                    missed.push((name.clone(), m));
                    now
                }
                None => next_after(expr, now)?,
            };
            due.push((name.clone(), expr.clone(), when));
        }
        Ok((Timetable { due }, missed))
    }

    /// The job due first, and when.
    pub fn next_due(&mut self) -> Option<(String, DateTime<Local>)> {
        self.due.sort_by_key(|d| d.2);
        self.due.first().map(|(n, _, w)| (n.clone(), *w))
    }

    /// Records that `name`'s run, started at `started`, ended at `now`.
    pub fn ran(
        &mut self,
        name: &str,
        started: DateTime<Local>,
        now: DateTime<Local>,
    ) -> Result<()> {
        if let Some(d) = self.due.iter_mut().find(|d| d.0 == name) {
            d.2 = match missed_since(&d.1, &started, &now) {
                Some(_) => now,
                None => next_after(&d.1, now)?,
            };
        }
        Ok(())
    }
}

fn next_after(expr: &str, t: DateTime<Local>) -> Result<DateTime<Local>> {
    next_runs(expr, t, 1)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Config(format!("schedule '{expr}' has no next run time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_to_on_calendar() {
        assert_eq!(
            on_calendar("15 6 * * 1-5").unwrap(),
            "Mon,Tue,Wed,Thu,Fri *-*-* 06:15:00"
        );
        assert_eq!(
            on_calendar("*/20 1,13 * * *").unwrap(),
            "*-*-* 01,13:00,20,40:00"
        );
        assert_eq!(
            on_calendar("0 3 1 */3 *").unwrap(),
            "*-01,04,07,10-01 03:00:00"
        );
        assert_eq!(on_calendar("0 0 * * 0,7").unwrap(), "Sun *-*-* 00:00:00");
        assert_eq!(on_calendar("30 2 * * sat").unwrap(), "Sat *-*-* 02:30:00");
        assert!(on_calendar("0 0 1 * 1").is_err());
        assert!(on_calendar("61 0 * * *").is_err());
        assert!(parse("15 6 * *").is_err());
    }

    #[test]
    fn next_runs_follow_the_expression() {
        let from = Local.with_ymd_and_hms(2026, 11, 27, 7, 0, 0).unwrap(); // a Friday
        let runs = next_runs("15 6 * * 1-5", from, 3).unwrap();
        let s: Vec<String> = runs
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M %a").to_string())
            .collect();
        assert_eq!(
            s,
            [
                "2026-11-30 06:15 Mon",
                "2026-12-01 06:15 Tue",
                "2026-12-02 06:15 Wed"
            ]
        );
    }

    #[test]
    fn a_missed_run_is_found_once() {
        let last = Local.with_ymd_and_hms(2026, 11, 24, 6, 15, 5).unwrap();
        let now = Local.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap();
        let missed = missed_since("15 6 * * *", &last, &now).unwrap();
        assert_eq!(missed.format("%d %H:%M").to_string(), "25 06:15");
        let early = Local.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap();
        assert!(missed_since("15 6 * * *", &last, &early).is_none());
    }
}
