//! Human-readable sizes, times and tables.

pub use holdfast_app::human::{bytes, local_time, mode};

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len().saturating_sub(1))));
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

/// What the snapshot's consistency guarantees, in words an operator reads once: the terminal
/// summary of a backup. (`consistency_line` is the short form for tables.)
pub fn consistency_explained(s: &holdfast_core::snapshot::Snapshot) -> String {
    let Some(c) = &s.consistency else {
        return "not recorded".into();
    };
    let not_running = c
        .notes
        .iter()
        .any(|n| n == holdfast_app::procedure::NOT_RUNNING_NOTE);
    match (c.mode.as_str(), c.consistent) {
        ("stop", true) if not_running => {
            "quiescent: the service was not running, and was left stopped".to_string()
        }
        ("stop", true) => format!(
            "quiescent: the service was stopped while the data was read{}",
            c.downtime_secs
                .map(|d| format!(" ({d:.1}s downtime)"))
                .unwrap_or_default()
        ),
        ("snapshot", true) => "point in time: read from an atomic volume snapshot while the \
             service ran; it restores as after a power cut (the application recovers as from a \
             crash)"
            .to_string(),
        ("live", _) => format!(
            "NOT guaranteed consistent: read while the service ran; {} file(s) changed while \
             read and were read again, {} still changing (listed above), {} vanished",
            c.reread.len(),
            c.inconsistent.len(),
            c.vanished.len()
        ),
        ("none", _) => "a plain backup: no consistency procedure".to_string(),
        (mode, _) => format!(
            "NOT consistent: mode {mode}, but some files could not be read or the service \
             misbehaved (see the warnings)"
        ),
    }
}

/// "stop, consistent, 4.2s downtime" and the like.
pub fn consistency_line(s: &holdfast_core::snapshot::Snapshot) -> String {
    let Some(c) = &s.consistency else {
        return "not recorded".into();
    };
    let mut parts = vec![c.mode.clone()];
    match c.mode.as_str() {
        "live" => parts.push(format!(
            "{} re-read, {} inconsistent, {} vanished",
            c.reread.len(),
            c.inconsistent.len(),
            c.vanished.len()
        )),
        "none" => {}
        _ => parts.push(
            if c.consistent {
                "consistent"
            } else {
                "NOT consistent"
            }
            .into(),
        ),
    }
    if let Some(d) = c.downtime_secs {
        parts.push(format!("{d:.1}s downtime"));
    }
    parts.join(", ")
}

/// The application name and version recorded in a snapshot, for listings.
pub fn app_column(s: &holdfast_core::snapshot::Snapshot) -> (String, String) {
    match holdfast_app::restore::recorded_app(s) {
        Some((name, v)) => (name, v.unwrap_or_default()),
        None => (String::new(), String::new()),
    }
}

pub fn app_filter(s: &holdfast_core::snapshot::Snapshot, app: &Option<String>) -> bool {
    match app {
        None => true,
        Some(a) => app_column(s).0 == *a,
    }
}

/// "snapshot 1a2b3c4d of design saved: 6163 files (…)": the line every backup ends with.
pub fn snapshot_saved(
    id: &holdfast_core::id::SnapshotId,
    app: Option<&str>,
    s: &holdfast_core::snapshot::Snapshot,
) -> String {
    let m = &s.summary;
    format!(
        "snapshot {}{} saved: {} files ({} new, {} changed, {} unchanged), {} read, {} added ({} stored) in {:.1}s",
        id.short(),
        app.map(|a| format!(" of {a}")).unwrap_or_default(),
        m.total_files,
        m.files_new,
        m.files_changed,
        m.files_unchanged,
        bytes(m.bytes_read),
        bytes(m.bytes_added),
        bytes(m.bytes_stored),
        m.duration_secs
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn modes_and_sizes() {
        use holdfast_core::tree::NodeKind;
        assert_eq!(super::mode(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(super::mode(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(12), "12 B");
    }
}
