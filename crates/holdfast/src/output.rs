//! Writing to stdout and stderr without ever panicking on a closed pipe.
//!
//! `holdfast ls latest / | head -2` closes the pipe after two lines; `println!` would then
//! panic ("failed printing to stdout") with exit code 101. Here a closed stdout is noted and
//! everything after it is dropped, so the command ends as it would have (locks released,
//! its own exit code), and long listings stop early by asking [`stdout_closed`].

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// A failure to write stdout other than a closed pipe (a full disk behind `> file`): the
/// output is incomplete, and the command must not exit 0.
static STDOUT_FAILED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Why stdout could not be written, when it was not a reader going away.
pub fn stdout_failure() -> Option<String> {
    STDOUT_FAILED.lock().unwrap().clone()
}
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a reader closed stdout: output from now on goes nowhere.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn write(to_stderr: bool, args: std::fmt::Arguments, newline: bool) {
    let closed = if to_stderr {
        &STDERR_CLOSED
    } else {
        &STDOUT_CLOSED
    };
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let result = if to_stderr {
        let mut e = std::io::stderr().lock();
        e.write_fmt(args)
            .and_then(|()| if newline { e.write_all(b"\n") } else { Ok(()) })
    } else {
        let mut o = std::io::stdout().lock();
        o.write_fmt(args)
            .and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) })
    };
    // Nothing more can be said there. A closed pipe is the reader's choice (`| head`); any
    // other failure leaves the output incomplete and is reported at the end.
    if let Err(e) = result {
        closed.store(true, Ordering::Relaxed);
        if !to_stderr && e.kind() != std::io::ErrorKind::BrokenPipe {
            *STDOUT_FAILED.lock().unwrap() = Some(e.to_string());
        }
    }
}

pub fn out(args: std::fmt::Arguments, newline: bool) {
    write(false, args, newline)
}

pub fn err(args: std::fmt::Arguments, newline: bool) {
    write(true, args, newline)
}

/// `println!` that never panics.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::output::out(format_args!($($t)*), true) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::output::out(format_args!($($t)*), false) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => { $crate::output::err(format_args!($($t)*), true) };
}
