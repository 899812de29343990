//! PostgreSQL dumps taken as a matching pair with the data directory, and their restore.
//!
//! The server's own tools do the work (`pg_dump`, `pg_dumpall`, `pg_restore`, `psql`): they
//! know every object type and version quirk, and a dump they wrote is one any DBA can
//! restore by hand. `pg_dump -Fc` is streamed through a pipe straight into the repository, so
//! a dump never lands on the disk being backed up; it is not compressed by default (`-Z0`),
//! since the repository compresses on every core and deduplicates what did not change
//! between dumps, which a compressed dump prevents (docs/scale.md, "Database dumps"). The password comes from PGPASSFILE or
//! PGPASSWORD, never from a URL on a command line, where `ps` would show it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use holdfast_core::backup::{AttachmentSink, AttachmentSource};
use holdfast_core::snapshot::Attachment;

use crate::config::{DumpFormat, PostgresConfig};
use crate::error::{Error, Result};
pub use crate::pg_url::PgUrl;

/// libpq's connect timeout when neither the configuration nor PGCONNECT_TIMEOUT sets one:
/// long enough for a server under load, short enough that a hung one fails the run in time.
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 30;

/// A configured PostgreSQL source with its tools located.
#[derive(Clone, Debug)]
pub struct Postgres {
    pub url: PgUrl,
    pub name: String,
    pub config: PostgresConfig,
    pub bin_dir: Option<PathBuf>,
    /// Where the directory format writes before storing (removed afterwards).
    pub scratch: PathBuf,
    /// Why the last dump failed, so the caller can report it as an application step.
    pub failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Restore GRANTs and REVOKEs (`false` for a server that lacks the dump's roles, such as
    /// a drill's own scratch cluster).
    pub restore_privileges: bool,
}

impl Postgres {
    pub fn new(config: &PostgresConfig, scratch: &Path) -> Result<Postgres> {
        let url = PgUrl::parse(&config.url)
            .map_err(|e| Error::Config(format!("postgres url '{}': {e}", config.url)))?;
        let bin_dir = config.bin_dir.clone().or_else(newest_bin_dir);
        Ok(Postgres {
            name: config.name.clone().unwrap_or(url.dbname.clone()),
            url,
            config: config.clone(),
            bin_dir,
            scratch: scratch.to_path_buf(),
            failure: Default::default(),
            restore_privileges: true,
        })
    }

    /// A server given on the command line (`--postgres URL`).
    pub fn from_url(url: &str, scratch: &Path) -> Result<Postgres> {
        Postgres::new(&PostgresConfig::for_url(url), scratch)
    }

    pub fn tool(&self, name: &str) -> Command {
        let path = match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        };
        let mut c = Command::new(path);
        if let Some(p) = &self.config.passfile {
            // libpq prefers PGPASSWORD to the file: the configured file must win.
            c.env("PGPASSFILE", p).env_remove("PGPASSWORD");
        }
        match self.config.connect_timeout {
            Some(t) => {
                // libpq counts whole seconds and treats 1 as 2; 0 means no limit.
                c.env("PGCONNECT_TIMEOUT", t.as_secs().to_string());
            }
            None if std::env::var_os("PGCONNECT_TIMEOUT").is_none() => {
                c.env(
                    "PGCONNECT_TIMEOUT",
                    DEFAULT_CONNECT_TIMEOUT_SECS.to_string(),
                );
            }
            None => {}
        }
        c.env_remove("HOLDFAST_PASSWORD").stdin(Stdio::null());
        c
    }

    /// `pg_dump` with the configured lock wait timeout.
    fn pg_dump(&self) -> Command {
        let mut c = self.tool("pg_dump");
        let wait = self.config.lock_wait_timeout.as_std();
        if !wait.is_zero() {
            c.arg(format!("--lock-wait-timeout={}", wait.as_millis()));
        }
        c
    }

    /// pg_dump for a dump that goes into the repository, compressed as configured (by default
    /// not at all: the repository compresses and deduplicates).
    fn pg_dump_stored(&self) -> Command {
        let mut c = self.pg_dump();
        c.arg(format!("-Z{}", self.config.compression));
        c
    }

    fn run(&self, step: &str, mut cmd: Command) -> Result<String> {
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Error::step(step, format!("{:?}: {e}", cmd.get_program())))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(Error::step(
                step,
                explain(&String::from_utf8_lossy(&out.stderr)),
            ))
        }
    }

    /// One value from a query against `url`.
    pub fn query(&self, url: &PgUrl, sql: &str) -> Result<String> {
        let mut c = self.tool("psql");
        c.args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            "-d",
        ])
        .arg(url.to_string());
        self.run(&format!("querying {}", url.dbname), c)
    }

    /// The tables of `url` (`schema.table`, ordinary and partitioned), with the planner's row
    /// estimate: what a dump is later checked against.
    pub fn catalog(&self, url: &PgUrl) -> Result<Vec<(String, i64)>> {
        let out = self.query(
            url,
            "SELECT n.nspname || '.' || c.relname || '|' || GREATEST(c.reltuples, 0)::bigint \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1",
        )?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (t, n) = l.rsplit_once('|')?;
                Some((t.to_string(), n.trim().parse().unwrap_or(0)))
            })
            .collect())
    }

    /// The tables of `url`, as `schema.table`.
    pub fn tables(&self, url: &PgUrl) -> Result<Vec<String>> {
        Ok(self.catalog(url)?.into_iter().map(|(t, _)| t).collect())
    }

    pub fn server_version(&self) -> Result<String> {
        self.query(&self.url, "SHOW server_version")
    }

    pub fn tool_version(&self, tool: &str) -> Result<String> {
        let mut c = self.tool(tool);
        c.arg("--version");
        self.run(&format!("{tool} --version"), c)
    }

    /// Whether the database holds no tables, views, sequences or functions of its own.
    pub fn is_empty(&self, url: &PgUrl) -> Result<bool> {
        let n = self.query(
            url,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
        )?;
        Ok(n.trim() == "0")
    }

    pub fn exists(&self, db: &str) -> Result<bool> {
        let n = self.query(
            &self.url.with_db("postgres"),
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                db.replace('\'', "''")
            ),
        )?;
        Ok(n.trim() != "0")
    }

    /// Dumps `url` to a custom-format file (a safety copy before a pristine restore).
    pub fn dump_to_file(&self, url: &PgUrl, file: &Path) -> Result<()> {
        let mut c = self.pg_dump();
        c.args(["-Fc", "-w", "-f"])
            .arg(file)
            .arg("-d")
            .arg(url.to_string());
        self.run(&format!("pg_dump of {}", url.dbname), c)
            .map(|_| ())
    }

    /// Restores a custom-format dump read from `input` (or a directory-format dump at
    /// `dir`) into `target`, which is created when missing. A non-empty target is refused
    /// unless `clean`, which drops the objects of the dump before recreating them.
    pub fn restore_into(&self, target: &PgUrl, clean: bool, input: DumpInput<'_>) -> Result<()> {
        let step = format!("restoring database {}", target.dbname);
        let target_srv = Postgres {
            url: target.clone(),
            ..self.clone()
        };
        if !target_srv.exists(&target.dbname)? {
            let mut c = self.tool("createdb");
            c.arg("-w")
                .arg(format!("--maintenance-db={}", target.with_db("postgres")))
                .arg(&target.dbname);
            // createdb takes host/port/user from the maintenance URL.
            self.run(&format!("creating database {}", target.dbname), c)?;
        } else if !clean && !target_srv.is_empty(target)? {
            return Err(Error::step(
                step,
                "the target database is not empty (use --clean to replace its objects)",
            ));
        }
        let mut c = self.tool("pg_restore");
        c.args(["-w", "--no-owner", "--exit-on-error", "-d"])
            .arg(target.to_string());
        if clean {
            c.args(["--clean", "--if-exists"]);
        }
        if !self.restore_privileges {
            c.arg("--no-privileges");
        }
        match input {
            DumpInput::Dir(d) => {
                c.arg("-j").arg(self.config.jobs.max(1).to_string()).arg(d);
                self.run(&step, c).map(|_| ())
            }
            DumpInput::Stream(feed) => {
                c.stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                let mut child = c
                    .spawn()
                    .map_err(|e| Error::step(&step, format!("pg_restore: {e}")))?;
                let mut stdin = child.stdin.take().expect("piped");
                let fed = feed(&mut stdin);
                drop(stdin);
                let out = child
                    .wait_with_output()
                    .map_err(|e| Error::step(&step, e.to_string()))?;
                if !out.status.success() {
                    return Err(Error::step(
                        step,
                        explain(&String::from_utf8_lossy(&out.stderr)),
                    ));
                }
                fed.map_err(Error::Core)?;
                Ok(())
            }
        }
    }
}

/// Where a dump to restore comes from.
pub enum DumpInput<'a> {
    /// A custom-format dump written into pg_restore's standard input by the closure.
    Stream(&'a mut dyn FnMut(&mut dyn std::io::Write) -> holdfast_core::Result<u64>),
    /// A directory-format dump on disk.
    Dir(&'a Path),
}

/// The newest Debian-style PostgreSQL bin directory, if any.
fn newest_bin_dir() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let Ok(v) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let bin = e.path().join("bin");
        if bin.join("pg_dump").exists() && best.as_ref().map(|b| v > b.0).unwrap_or(true) {
            best = Some((v, bin));
        }
    }
    best.map(|b| b.1)
}

/// The useful part of a PostgreSQL tool's error output, with a hint for the usual causes.
fn explain(stderr: &str) -> String {
    let msg = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ");
    if msg.contains("server version mismatch") || msg.contains("aborting because of server version")
    {
        format!("{msg} (pg_dump must be at least as new as the server: set postgres.bin_dir to a newer PostgreSQL's bin directory)")
    } else if msg.contains("no password supplied") || msg.contains("password authentication failed")
    {
        format!("{msg} (give the password in a PGPASSFILE: postgres.passfile or the PGPASSFILE environment variable)")
    } else if msg.contains("timeout expired") {
        format!(
            "{msg} (the server did not complete the connection in time: postgres.connect_timeout, else PGCONNECT_TIMEOUT, else 30s; a connect_timeout in the URL wins over both)"
        )
    } else if msg.contains("statement timeout") && msg.contains("LOCK TABLE") {
        format!("{msg} (another transaction held a table lock for longer than postgres.lock_wait_timeout)")
    } else if msg.is_empty() {
        "failed without a message".into()
    } else {
        msg
    }
}

impl AttachmentSource for Postgres {
    fn produce(&self, sink: &mut AttachmentSink<'_>) -> holdfast_core::Result<Attachment> {
        let fail = |what: &str, e: String| {
            let msg = format!("{what} of database {}: {e}", self.name);
            *self.failure.lock().unwrap() = Some(msg.clone());
            holdfast_core::Error::Invalid(msg)
        };
        let started = Instant::now();
        let server_version = self
            .server_version()
            .map_err(|e| fail("connecting for the dump", e.to_string()))?;
        let dump_version = self
            .tool_version("pg_dump")
            .map_err(|e| fail("pg_dump", e.to_string()))?;
        let mut details = std::collections::BTreeMap::new();
        // The table list a drill compares the restored database with (a table of contents
        // cannot show a table the dump lacks).
        let catalog = self
            .catalog(&self.url)
            .map_err(|e| fail("listing the tables", e.to_string()))?;
        details.insert(
            "catalog".into(),
            serde_json::Value::Array(
                catalog
                    .into_iter()
                    .map(|(t, n)| serde_json::json!({"table": t, "rows_estimate": n}))
                    .collect(),
            ),
        );
        let kind = match self.config.format {
            DumpFormat::Custom => {
                let mut c = self.pg_dump_stored();
                c.args(["-Fc", "-w", "-d"])
                    .arg(self.url.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = c
                    .spawn()
                    .map_err(|e| fail("starting pg_dump", e.to_string()))?;
                let mut err = child.stderr.take().expect("piped");
                let err_reader = std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = err.read_to_string(&mut s);
                    s
                });
                let mut out = child.stdout.take().expect("piped");
                let stored = sink.add_stream(&format!("{}.dump", self.name), &mut out);
                if stored.is_err() {
                    let _ = child.kill();
                }
                drop(out);
                let status = child.wait().map_err(|e| fail("pg_dump", e.to_string()))?;
                let stderr = err_reader.join().unwrap_or_default();
                stored?;
                if !status.success() {
                    return Err(fail("pg_dump", explain(&stderr)));
                }
                "postgresql-custom"
            }
            DumpFormat::Directory => {
                std::fs::create_dir_all(&self.scratch)
                    .map_err(|e| holdfast_core::Error::io(&self.scratch, e))?;
                let tmp = tempfile::Builder::new()
                    .prefix("pgdump-")
                    .tempdir_in(&self.scratch)
                    .map_err(|e| holdfast_core::Error::io(&self.scratch, e))?;
                let dir = tmp.path().join("dump");
                let mut c = self.pg_dump_stored();
                c.args(["-Fd", "-w", "-j"])
                    .arg(self.config.jobs.to_string())
                    .arg("-f")
                    .arg(&dir)
                    .arg("-d")
                    .arg(self.url.to_string());
                self.run("pg_dump", c)
                    .map_err(|e| fail("pg_dump -Fd", e.to_string()))?;
                sink.add_dir(&format!("{}.dir", self.name), &dir)?;
                "postgresql-directory"
            }
        };
        if self.config.globals {
            let mut c = self.tool("pg_dumpall");
            c.args(["--globals-only", "-w"]);
            if !self.config.role_passwords {
                c.arg("--no-role-passwords");
            }
            c.arg("-d")
                .arg(self.url.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let out = c
                .output()
                .map_err(|e| fail("pg_dumpall --globals-only", e.to_string()))?;
            if !out.status.success() {
                return Err(fail(
                    "pg_dumpall --globals-only",
                    explain(&String::from_utf8_lossy(&out.stderr)),
                ));
            }
            sink.add_stream("globals.sql", &mut out.stdout.as_slice())?;
            details.insert("globals".into(), serde_json::json!("globals.sql"));
        }
        details.insert("database".into(), serde_json::json!(self.url.dbname));
        details.insert("server".into(), serde_json::json!(self.url.server()));
        details.insert("server_version".into(), serde_json::json!(server_version));
        details.insert("pg_dump_version".into(), serde_json::json!(dump_version));
        details.insert(
            "duration_secs".into(),
            serde_json::json!(started.elapsed().as_secs_f64()),
        );
        Ok(Attachment {
            name: format!("postgres/{}", self.name),
            kind: kind.into(),
            tree: holdfast_core::id::BlobId([0; 32]),
            bytes: 0,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = PgUrl::parse("postgresql://govern@127.0.0.1:5432/govern?sslmode=disable").unwrap();
        assert_eq!(u.dbname, "govern");
        assert_eq!(u.server(), "127.0.0.1:5432");
        assert_eq!(
            u.with_db("postgres").to_string(),
            "postgresql://govern@127.0.0.1:5432/postgres?sslmode=disable"
        );
        assert!(PgUrl::parse("postgresql://u:pw@h/db")
            .unwrap_err()
            .contains("PGPASSFILE"));
        assert!(PgUrl::parse("postgresql://h/db?password=x").is_err());
        assert!(PgUrl::parse("postgresql://h").is_err());
        assert!(PgUrl::parse("mysql://h/db").is_err());
    }
}
