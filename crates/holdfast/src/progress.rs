//! Progress of long work, drawn from the core's counters by a background thread: a bar on a
//! terminal, or, asked for with `--progress-interval`, one line on stderr every interval, for
//! the journal of a long run under systemd. Lines are opt-in so that cron, which mails whatever
//! a job prints, stays quiet.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How a command shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Bar,
    /// One line on stderr every interval.
    Lines(Duration),
    Nothing,
}

impl Bar {
    /// Polls `read() -> (done_bytes, total_bytes, files_done, total_files)` until dropped; a
    /// total of 0 is unknown (yet).
    pub fn start(
        show: Show,
        label: &'static str,
        read: impl Fn() -> (u64, u64, u64, u64) + Send + 'static,
    ) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = match show {
            Show::Nothing => None,
            Show::Bar => Some(std::thread::spawn(move || draw_bar(&s, label, read))),
            Show::Lines(every) => Some(std::thread::spawn(move || {
                let started = Instant::now();
                loop {
                    std::thread::park_timeout(every);
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    let line = progress_line(label, read(), started.elapsed());
                    // A closed or full stderr is not a reason to stop the work.
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
            })),
        };
        Bar { stop, thread }
    }
}

fn draw_bar(stop: &AtomicBool, label: &'static str, read: impl Fn() -> (u64, u64, u64, u64)) {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap(),
    );
    pb.set_prefix(label);
    while !stop.load(Ordering::Relaxed) {
        let (b, tb, f, tf) = read();
        pb.set_length(tb.max(b));
        pb.set_position(b);
        pb.set_message(format!("{f}/{tf} files"));
        // Parked, not asleep, so that the end of the work wakes it at once.
        std::thread::park_timeout(Duration::from_millis(100));
    }
    pb.finish_and_clear();
}

/// `backup: 1.2 GiB of 4.0 GiB (30%), 1200 of 5000 files, 95.0 MiB/s, 13s`: one line, no
/// control characters, for a log.
fn progress_line(
    label: &str,
    (bytes, total_bytes, files, total_files): (u64, u64, u64, u64),
    elapsed: Duration,
) -> String {
    use crate::format::bytes as size;
    let mut line = format!("{label}: {}", size(bytes));
    if total_bytes >= bytes && total_bytes > 0 {
        line += &format!(" of {} ({}%)", size(total_bytes), bytes * 100 / total_bytes);
    }
    line += &format!(", {files}");
    if total_files >= files && total_files > 0 {
        line += &format!(" of {total_files}");
    }
    let secs = elapsed.as_secs_f64().max(0.001);
    line += &format!(
        " files, {}/s, {}",
        size((bytes as f64 / secs) as u64),
        clock(elapsed)
    );
    line
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}min {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}min {s:02}s"),
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_says_what_is_known_and_no_more() {
        let mib = 1 << 20;
        assert_eq!(
            progress_line(
                "backup",
                (30 * mib, 100 * mib, 3, 10),
                Duration::from_secs(3)
            ),
            "backup: 30.0 MiB of 100.0 MiB (30%), 3 of 10 files, 10.0 MiB/s, 3s"
        );
        // Totals not known yet (the scan is still running), or passed.
        assert_eq!(
            progress_line("restore", (2 * mib, 0, 7, 0), Duration::from_secs(3725)),
            "restore: 2.0 MiB, 7 files, 562 B/s, 1h 02min 05s"
        );
        assert_eq!(
            progress_line("restore", (2 * mib, mib, 7, 5), Duration::from_secs(61)),
            "restore: 2.0 MiB, 7 files, 33.6 KiB/s, 1min 01s"
        );
    }
}
