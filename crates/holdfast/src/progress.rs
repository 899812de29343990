//! Progress bars on a terminal, drawn from the core's counters by a background thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    /// Polls `read() -> (done_bytes, total_bytes, files_done, total_files)` until finished.
    pub fn start(
        enabled: bool,
        label: &'static str,
        read: impl Fn() -> (u64, u64, u64, u64) + Send + 'static,
    ) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled {
            return Bar { stop, thread: None };
        }
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap(),
            );
            pb.set_prefix(label);
            while !s.load(Ordering::Relaxed) {
                let (b, tb, f, tf) = read();
                pb.set_length(tb.max(b));
                pb.set_position(b);
                pb.set_message(format!("{f}/{tf} files"));
                // Parked, not asleep, so that the end of the work wakes it at once.
                std::thread::park_timeout(Duration::from_millis(100));
            }
            pb.finish_and_clear();
        });
        Bar {
            stop,
            thread: Some(thread),
        }
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
