//! Writing to stdout and stderr without ever panicking on a closed pipe.
//!
//! `holdfast ls latest / | head -2` closes the pipe after two lines; `println!` would then
//! panic ("failed printing to stdout") with exit code 101. Here a closed stdout is noted and
//! everything after it is dropped, so the command ends as it would have (locks released,
//! its own exit code), and long listings stop early by asking [`stdout_closed`].

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
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
    // A closed pipe, a full disk behind a redirect: nothing more can be said there.
    if result.is_err() {
        closed.store(true, Ordering::Relaxed);
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
