//! The configuration file: which repository, which applications, and how to back them up.
//!
//! An administrator writes it once and reads it again at 6:15 when something went wrong, so
//! every key has a documented default, unknown keys are errors (a typo must not silently turn
//! a setting off), and every error names the file, line and column and what was expected.
//! `docs/configuration.md` documents each key; keep the two in step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use holdfast_core::share::Subset;
use holdfast_core::span::Span;
use serde::Deserialize;

use crate::error::{Error, Result};
pub use crate::profile::ProfileName;

/// Where the configuration is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/holdfast/holdfast.toml";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository location; `--repo`/`HOLDFAST_REPO` win over it.
    pub repository: Option<String>,
    /// Password file; `--password-file`/`HOLDFAST_PASSWORD_FILE` win over it.
    pub password_file: Option<PathBuf>,
    /// Password command; used when no password file is given.
    pub password_command: Option<String>,
    /// Where holdfast keeps state between runs (volume snapshots in flight, kept snapshots).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Run log: one JSON line per run (default `<state_dir>/runs.jsonl`).
    pub run_log: Option<PathBuf>,
    /// Prometheus textfile-collector file written after every run (`--metrics-file` wins).
    pub metrics_file: Option<PathBuf>,
    /// Commands run after every run of every application.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// How to reach an `s3://` repository; the `--s3-*` flags win.
    #[serde(default)]
    pub s3: crate::access::S3Settings,
    #[serde(default)]
    pub app: BTreeMap<String, AppConfig>,
    /// `holdfast serve`: the web console.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// The file this was read from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/holdfast")
}

/// `[console]`: the web console (`holdfast serve`). Each key has a flag of the same name,
/// which wins over it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address and port to listen on (default `127.0.0.1:8420`). An address other than
    /// loopback needs `tls_cert`/`tls_key` or `insecure_http`.
    pub listen: Option<std::net::SocketAddr>,
    /// The access token's file (default `<state_dir>/console-token`, created 0600 at the first
    /// start).
    pub token_file: Option<PathBuf>,
    /// An Argon2 hash (PHC string, from `holdfast serve --hash-password`): a password that
    /// also logs in.
    pub password_hash: Option<String>,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (behind a TLS proxy).
    #[serde(default)]
    pub insecure_http: bool,
    /// No actions ("back up now", "drill now"): browsing and downloads only.
    #[serde(default)]
    pub read_only: bool,
    /// How long after a scheduled time a missing run turns red (default 1h), on top of the
    /// last run's duration.
    pub grace: Option<holdfast_core::span::Span>,
}

impl ConsoleConfig {
    /// This section with `flags` laid over it: a flag given wins over its key.
    pub fn overridden(&self, flags: ConsoleConfig) -> ConsoleConfig {
        ConsoleConfig {
            listen: flags.listen.or(self.listen),
            token_file: flags.token_file.or_else(|| self.token_file.clone()),
            password_hash: flags.password_hash.or_else(|| self.password_hash.clone()),
            tls_cert: flags.tls_cert.or_else(|| self.tls_cert.clone()),
            tls_key: flags.tls_key.or_else(|| self.tls_key.clone()),
            insecure_http: flags.insecure_http || self.insecure_http,
            read_only: flags.read_only || self.read_only,
            grace: flags.grace.or(self.grace),
        }
    }

    /// Where the console listens unless told: loopback only.
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8420";
}

/// Commands run when a run ends, with its result in the environment (HOLDFAST_APP,
/// HOLDFAST_RESULT, HOLDFAST_EXIT_CODE, HOLDFAST_SNAPSHOT, HOLDFAST_ERROR, ...), and a
/// monitoring service pinged when it starts and ends ([`crate::notify`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub always: Option<String>,
    /// Healthchecks-style URL: `/start`, success, `/fail` (see [`crate::notify`]).
    pub ping_url: Option<crate::notify::PingUrl>,
}

impl HooksConfig {
    /// The hooks that apply to a run that ended with `success`.
    pub fn for_result(&self, success: bool) -> Vec<(&'static str, &str)> {
        let mut v = Vec::new();
        match (success, &self.on_success, &self.on_failure) {
            (true, Some(c), _) => v.push(("on_success", c.as_str())),
            (false, _, Some(c)) => v.push(("on_failure", c.as_str())),
            _ => {}
        }
        if let Some(c) = &self.always {
            v.push(("always", c.as_str()));
        }
        v
    }
}

/// The retention policy applied after each scheduled run (`holdfast run`): the same typed
/// rules as `forget --keep-* [--prune]`, so the two cannot drift.
pub type RetentionConfig = holdfast_core::retention::ForgetRules;

/// Verification after scheduled runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Read and verify this share of the data ("5%", "1/7"); "100%" reads everything.
    pub read_data_subset: Option<Subset>,
    /// Run the check when the last one is older than this (e.g. "7d"); every run if absent.
    pub every: Option<Span>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Quiesce check, stop the service, back up, start it again.
    #[default]
    Stop,
    /// Back up an atomic volume snapshot of the data directory.
    Snapshot,
    /// Back up while running; files that change are read again and reported.
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stop => "stop",
            Mode::Snapshot => "snapshot",
            Mode::Live => "live",
        }
    }
}

/// `--consistency` and `consistency =` read the same words.
impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "stop" => Ok(Mode::Stop),
            "snapshot" => Ok(Mode::Snapshot),
            "live" => Ok(Mode::Live),
            _ => Err(format!(
                "consistency '{s}': expected stop, snapshot or live"
            )),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    #[serde(default)]
    pub profile: ProfileName,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub consistency: Mode,
    /// Tiers of the profile to leave out; default: the profile's (dss: `temporary`).
    pub exclude_tiers: Option<Vec<String>>,
    /// Further exclude patterns, as `backup --exclude`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Tags added to every snapshot of this application.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Host name recorded instead of the machine's.
    pub host: Option<String>,
    #[serde(default)]
    pub one_file_system: bool,
    #[serde(default)]
    pub service: ServiceConfig,
    /// Where the application's version is read: a JSON file (relative to the data directory)
    /// and the key in it. Default from the profile (dss: `dss-version.json`, `product_version`).
    pub version_file: Option<PathBuf>,
    pub version_key: Option<String>,
    /// A command printing the installed version (for restores onto a new data directory).
    pub installed_version_command: Option<String>,
    /// Run after restoring onto another machine, location or version; `{data_dir}` is the
    /// restored directory (dss: the installer's upgrade step, e.g.
    /// `/opt/dataiku-dss-13.2.0/installer.sh -d {data_dir} -u`).
    pub post_restore_command: Option<String>,
    /// Longest the post-restore step may take (an installer upgrade can be slow).
    #[serde(default = "default_post_restore_timeout")]
    pub post_restore_timeout: Span,
    /// Live mode: how often a file that changed while being read is read again.
    #[serde(default = "default_live_retries")]
    pub live_retries: u32,
    pub snapshot: Option<VolumeConfig>,
    #[serde(default)]
    pub postgres: Vec<PostgresConfig>,
    /// When `holdfast run` is due, in cron syntax ("15 6 * * 1-5"); used by
    /// `schedule install` and `daemon`.
    pub schedule: Option<String>,
    pub retention: Option<RetentionConfig>,
    pub check: Option<CheckConfig>,
    /// Hooks for this application, run after the global ones.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// Restore drills ([`crate::drill`]): how, and how often `run` does one.
    pub drill: Option<DrillConfig>,
}

/// `[app.NAME.drill]`: proving on a schedule that the latest backup restores and the
/// application starts on it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// `run` drills after its backup when the last drill of this application that passed or
    /// failed is older than this (e.g. "7d"); without it only `holdfast drill` does.
    pub every: Option<Span>,
    /// Where the scratch copy goes (default: STATE_DIR/drills); removed afterwards.
    pub scratch_dir: Option<PathBuf>,
    /// Starts the application on the scratch copy (`{data_dir}`, `{port}` are filled in).
    pub start: Option<String>,
    /// Stops it again; run whatever happened.
    pub stop: Option<String>,
    /// Passes once the copy is up: an http(s) URL answering 2xx, or a command exiting 0.
    pub probe: Option<String>,
    /// How long start and the probe may take.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: Span,
    /// SQL each restored database must answer without error.
    #[serde(default)]
    pub queries: Vec<String>,
    /// Where dumps are restored: `server` (a scratch database on the dump's own server, or a
    /// scratch cluster when the role may not create databases) or `cluster` (always a
    /// throwaway cluster of the drill's own, from the local server binaries).
    #[serde(default)]
    pub databases: ScratchDatabases,
}

/// Where a drill restores database dumps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScratchDatabases {
    #[default]
    Server,
    Cluster,
}

fn default_probe_timeout() -> Span {
    Span::from_mins(5)
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            every: None,
            scratch_dir: None,
            start: None,
            stop: None,
            probe: None,
            probe_timeout: default_probe_timeout(),
            queries: Vec::new(),
            databases: ScratchDatabases::default(),
        }
    }
}

impl Default for AppConfig {
    /// The documented defaults, for an application given on the command line.
    fn default() -> Self {
        AppConfig {
            profile: ProfileName::default(),
            data_dir: PathBuf::new(),
            consistency: Mode::default(),
            exclude_tiers: None,
            exclude: Vec::new(),
            tags: Vec::new(),
            host: None,
            one_file_system: false,
            service: ServiceConfig::default(),
            version_file: None,
            version_key: None,
            installed_version_command: None,
            post_restore_command: None,
            post_restore_timeout: default_post_restore_timeout(),
            live_retries: default_live_retries(),
            snapshot: None,
            postgres: Vec::new(),
            schedule: None,
            retention: None,
            check: None,
            hooks: HooksConfig::default(),
            drill: None,
        }
    }
}

fn default_post_restore_timeout() -> Span {
    Span::from_hours(2)
}

fn default_live_retries() -> u32 {
    3
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Commands run with `sh -c`; `{data_dir}` is replaced. Defaults from the profile
    /// (dss: `{data_dir}/bin/dss stop|start|status`).
    pub stop: Option<String>,
    pub start: Option<String>,
    pub status: Option<String>,
    /// Must succeed before stopping (e.g. "no job running"); retried until `quiesce_timeout`.
    pub quiesce: Option<String>,
    #[serde(default = "default_quiesce_timeout")]
    pub quiesce_timeout: Span,
    #[serde(default = "default_quiesce_interval")]
    pub quiesce_interval: Span,
    /// Longest a stop or start command may take.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: Span,
    /// The user that stop, start, status and quiesce commands run as (`root` to keep root,
    /// e.g. for systemctl). Default: for the dss profile the owner of the data directory; for
    /// the generic profile whoever runs holdfast, except that root refuses to run a service
    /// whose data directory belongs to another user without this set.
    pub user: Option<String>,
    /// dss profile: a file holding a global API key with administrator rights. With it, and
    /// no `quiesce` command, the check before stopping asks DSS's public API that no job,
    /// scenario or long task is running (see docs/applications.md).
    pub dss_api_key_file: Option<PathBuf>,
    /// dss profile: where the public API answers; default `http://127.0.0.1:PORT` with the
    /// port from `install.ini`.
    pub dss_url: Option<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            stop: None,
            start: None,
            status: None,
            quiesce: None,
            quiesce_timeout: default_quiesce_timeout(),
            quiesce_interval: default_quiesce_interval(),
            command_timeout: default_command_timeout(),
            user: None,
            dss_api_key_file: None,
            dss_url: None,
        }
    }
}

fn default_quiesce_timeout() -> Span {
    Span::from_mins(10)
}
fn default_quiesce_interval() -> Span {
    Span::from_secs(15)
}
fn default_command_timeout() -> Span {
    Span::from_mins(5)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    Btrfs,
    Lvm,
    Custom,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    pub provider: ProviderName,
    /// Keep the newest N volume snapshots as restore points instead of destroying them.
    #[serde(default)]
    pub keep_snapshots: u32,
    /// btrfs: the subvolume holding the data directory (default: the data directory).
    pub subvolume: Option<PathBuf>,
    /// btrfs: where snapshots are created (default: `<subvolume>/.holdfast-snapshots`).
    pub snapshot_dir: Option<PathBuf>,
    /// lvm: volume group and logical volume of the data directory.
    pub volume_group: Option<String>,
    pub logical_volume: Option<String>,
    /// lvm: copy-on-write space, as `lvcreate --size` (default `1G`).
    pub size: Option<String>,
    /// lvm, custom: where the snapshot is mounted (default `<state_dir>/mnt/<app>`).
    pub mount_dir: Option<PathBuf>,
    /// lvm, custom: where the origin volume is mounted (default: found from the data
    /// directory); the data directory's place inside the snapshot follows from it.
    pub origin_mount: Option<PathBuf>,
    /// lvm: extra mount options (e.g. `nouuid` for XFS).
    pub mount_options: Option<String>,
    /// custom: commands with `{name}` and `{mount}` replaced (also in the environment as
    /// HOLDFAST_SNAPSHOT_NAME and HOLDFAST_MOUNT_DIR).
    pub create: Option<String>,
    pub mount: Option<String>,
    pub unmount: Option<String>,
    pub destroy: Option<String>,
    /// custom: prints the names of existing snapshots, one a line.
    pub list: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// `pg_dump -Fc`, streamed into the repository.
    #[default]
    Custom,
    /// `pg_dump -Fd -j N` into a temporary directory, then stored.
    Directory,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgresql://user@host:port/dbname`; the password comes from PGPASSFILE or
    /// PGPASSWORD, never from this URL (which would put it on pg_dump's command line).
    pub url: String,
    /// Name of the dump in the snapshot (default: the database name).
    pub name: Option<String>,
    #[serde(default)]
    pub format: DumpFormat,
    /// Parallel jobs for the directory format.
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    /// pg_dump's own compression level (`-Z`, 0-9). 0, the default, leaves compression to the
    /// repository: zstd on every core instead of zlib on one, and tables that did not change
    /// deduplicate with the previous dump, which compressed dumps never do (docs/scale.md,
    /// "Database dumps").
    #[serde(default)]
    pub compression: u8,
    /// How long pg_dump may wait for its table locks before failing (`--lock-wait-timeout`):
    /// a transaction holding an exclusive lock would otherwise hang a nightly run until
    /// morning. `0` waits forever.
    #[serde(default = "default_lock_wait_timeout")]
    pub lock_wait_timeout: Span,
    /// How long the PostgreSQL tools may take to connect (libpq's `connect_timeout`, given as
    /// PGCONNECT_TIMEOUT): a server that accepts connections and never answers would
    /// otherwise hang a run. Default: PGCONNECT_TIMEOUT from the environment, else 30s.
    /// `0` waits forever.
    pub connect_timeout: Option<Span>,
    /// Also dump roles and tablespaces (`pg_dumpall --globals-only`).
    #[serde(default)]
    pub globals: bool,
    /// With `globals`: include role passwords (needs a superuser).
    #[serde(default)]
    pub role_passwords: bool,
    /// Directory of pg_dump, pg_restore... (default: the newest /usr/lib/postgresql/*/bin,
    /// else PATH).
    pub bin_dir: Option<PathBuf>,
    /// PGPASSFILE for this server.
    pub passfile: Option<PathBuf>,
}

fn default_jobs() -> u32 {
    2
}

impl PostgresConfig {
    /// A server given by URL alone (`--postgres URL`), every other setting at its default.
    pub fn for_url(url: &str) -> PostgresConfig {
        PostgresConfig {
            url: url.to_string(),
            name: None,
            format: DumpFormat::default(),
            jobs: default_jobs(),
            compression: 0,
            lock_wait_timeout: default_lock_wait_timeout(),
            connect_timeout: None,
            globals: false,
            role_passwords: false,
            bin_dir: None,
            passfile: None,
        }
    }
}

fn default_lock_wait_timeout() -> Span {
    Span::from_mins(10)
}

impl Config {
    /// Reads `path`; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read configuration {}: {e}", path.display()))
        })?;
        let mut c = Config::parse(&text, path)?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// The configuration at `explicit`, else at [`DEFAULT_PATH`] when that exists, else empty.
    pub fn find(explicit: Option<&Path>) -> Result<Config> {
        match explicit {
            Some(p) => Config::load(p),
            None if Path::new(DEFAULT_PATH).exists() => Config::load(Path::new(DEFAULT_PATH)),
            None => Ok(Config::default_empty()),
        }
    }

    pub fn default_empty() -> Config {
        Config {
            state_dir: default_state_dir(),
            ..Config::default()
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (line, col) = line_col(text, s.start);
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            let key = e
                .span()
                .and_then(|s| key_at(text, s.start))
                .map(|k| format!("{k}: "))
                .unwrap_or_default();
            Error::Config(format!(
                "{}{at}: {key}{}",
                path.display(),
                e.message().trim().replace('\n', " ")
            ))
        })?;
        c.validate(text, path)?;
        Ok(c)
    }

    /// Checks what types alone cannot: durations parse, commands needed by a mode are there,
    /// URLs carry no password, tiers exist in the profile.
    fn validate(&self, text: &str, path: &Path) -> Result<()> {
        let mut errors = Vec::new();
        for (name, app) in &self.app {
            let at = |key: &str| {
                let line = find_key_line(text, name, key);
                match line {
                    Some(l) => format!("{}:{l}: [app.{name}] {key}", path.display()),
                    None => format!("{}: [app.{name}] {key}", path.display()),
                }
            };
            for e in app.problems() {
                errors.push(format!("{}: {}", at(e.0), e.1));
            }
        }
        if let Some(h) = &self.console.password_hash {
            if let Err(e) = crate::console_auth::check_hash_syntax(h) {
                errors.push(format!("{}: [console] password_hash: {e}", path.display()));
            }
        }
        if self.console.tls_cert.is_some() != self.console.tls_key.is_some() {
            errors.push(format!(
                "{}: [console]: tls_cert and tls_key go together",
                path.display()
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errors.join("; ")))
        }
    }

    /// The applications with a schedule, `(name, cron expression)`; with `only`, that one, which
    /// must have a schedule.
    pub fn scheduled(&self, only: Option<&str>) -> Result<Vec<(String, String)>> {
        if let Some(a) = only {
            let app = self.app(a)?;
            let s = app.schedule.clone().ok_or_else(|| {
                Error::Config(format!(
                    "application {a} has no schedule in the configuration"
                ))
            })?;
            return Ok(vec![(a.to_string(), s)]);
        }
        Ok(self
            .app
            .iter()
            .filter_map(|(n, a)| a.schedule.clone().map(|s| (n.clone(), s)))
            .collect())
    }

    pub fn app(&self, name: &str) -> Result<&AppConfig> {
        self.app.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.app.keys().map(String::as_str).collect();
            Error::Config(format!(
                "no application '{name}' in {} (configured: {})",
                self.source
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the configuration".into()),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}

impl AppConfig {
    /// What is wrong with this application's settings, as (key, problem).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.data_dir.is_absolute() {
            out.push(("data_dir", "must be an absolute path".to_string()));
        }
        let profile = crate::profile::Profile::get(self.profile);
        for t in self.exclude_tiers.iter().flatten() {
            if profile.tier(t).is_none() {
                let known: Vec<&str> = profile.tiers.iter().map(|t| t.name).collect();
                out.push((
                    "exclude_tiers",
                    format!(
                        "unknown tier '{t}' for profile {} (known: {})",
                        profile.name.as_str(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        if profile.name != ProfileName::Dss {
            for (key, set) in [
                (
                    "service.dss_api_key_file",
                    self.service.dss_api_key_file.is_some(),
                ),
                ("service.dss_url", self.service.dss_url.is_some()),
            ] {
                if set {
                    out.push((key, "only the dss profile has a DSS API check".to_string()));
                }
            }
        } else if self.service.dss_url.is_some() && self.service.dss_api_key_file.is_none() {
            out.push((
                "service.dss_url",
                "needs service.dss_api_key_file (the check needs a key)".to_string(),
            ));
        }
        if let Some(d) = &self.drill {
            if d.start.is_some() && d.stop.is_none() {
                out.push((
                    "drill.stop",
                    "is needed with drill.start: the copy started by a drill must be stopped"
                        .into(),
                ));
            }
            // The dss profile knows how to start a copy: a probe of its own may replace the
            // default one; a stop without a start never makes sense.
            let probe_alone = d.probe.is_some() && profile.name != ProfileName::Dss;
            if d.start.is_none() && (d.stop.is_some() || probe_alone) {
                out.push((
                    "drill.start",
                    "is missing: drill.stop and drill.probe apply to a copy that drill.start starts"
                        .into(),
                ));
            }
        }
        if self.consistency == Mode::Stop
            && profile.name == ProfileName::Generic
            && (self.service.stop.is_none() || self.service.start.is_none())
        {
            out.push((
                "consistency",
                "\"stop\" with the generic profile needs service.stop and service.start commands"
                    .into(),
            ));
        }
        match (&self.snapshot, self.consistency) {
            (None, Mode::Snapshot) => out.push((
                "consistency",
                "\"snapshot\" needs a [snapshot] table naming the provider".into(),
            )),
            (Some(v), _) => {
                let need: &[(&str, bool)] = match v.provider {
                    ProviderName::Btrfs => &[],
                    ProviderName::Lvm => &[
                        ("snapshot.volume_group", v.volume_group.is_some()),
                        ("snapshot.logical_volume", v.logical_volume.is_some()),
                    ],
                    ProviderName::Custom => &[
                        ("snapshot.create", v.create.is_some()),
                        ("snapshot.destroy", v.destroy.is_some()),
                        (
                            "snapshot.list (needed by keep_snapshots)",
                            v.keep_snapshots == 0 || v.list.is_some(),
                        ),
                    ],
                };
                for (key, present) in need {
                    if !present {
                        out.push((key, "is required by this provider".into()));
                    }
                }
            }
            _ => {}
        }
        if let Some(s) = &self.schedule {
            if let Err(e) = crate::schedule::parse(s) {
                out.push(("schedule", e));
            }
        }
        if let Some(r) = &self.retention {
            if r.policy().is_empty() {
                out.push((
                    "retention",
                    "no keep_* rule: this policy would remove every snapshot".into(),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for pg in &self.postgres {
            match crate::pg_url::PgUrl::parse(&pg.url) {
                Ok(u) => {
                    let n = pg.name.clone().unwrap_or(u.dbname.clone());
                    if !names.insert(n.clone()) {
                        out.push(("postgres.name", format!("two dumps named '{n}'")));
                    }
                }
                Err(e) => out.push(("postgres.url", e)),
            }
            if pg.jobs == 0 {
                out.push(("postgres.jobs", "must be at least 1".into()));
            }
            if pg.compression > 9 {
                out.push(("postgres.compression", "must be 0 (none) to 9".into()));
            }
        }
        out
    }
}

/// The table and key whose value starts at `offset` (`[app.design.postgres] connect_timeout`),
/// so that a value that does not parse is named, not only located.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    if line_start + key.len() >= offset {
        return None; // the span is the key itself, not its value
    }
    let key = key.trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| format!("{h} "))
        .unwrap_or_default();
    Some(format!("{table}{key}"))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// The line of `key` inside `[app.NAME]` (or its sub-tables), for error messages.
fn find_key_line(text: &str, app: &str, key: &str) -> Option<usize> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let mut in_app = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let header = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_app = header == format!("app.{app}") || header.starts_with(&format!("app.{app}."));
            continue;
        }
        if in_app {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == leaf {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, Path::new("/etc/holdfast/holdfast.toml"))
    }

    #[test]
    fn full_example_parses_with_defaults() {
        let c = parse(
            r#"
repository = "/backups/repo"
[app.design]
profile = "dss"
data_dir = "/srv/dss/data"
consistency = "stop"
exclude_tiers = ["temporary", "logs"]
[[app.design.postgres]]
url = "postgresql://govern@127.0.0.1:5432/govern"
"#,
        )
        .unwrap();
        let a = c.app("design").unwrap();
        assert_eq!(a.profile, ProfileName::Dss);
        assert_eq!(a.live_retries, 3);
        assert_eq!(a.postgres[0].format, DumpFormat::Custom);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/holdfast"));
        assert!(c.app("nope").unwrap_err().to_string().contains("design"));
    }

    #[test]
    fn drill_settings_parse_and_half_a_start_stop_pair_is_refused() {
        let c = parse(
            "[app.x]\ndata_dir = \"/d\"\nconsistency = \"live\"\n[app.x.drill]\nevery = \"7d\"\nstart = \"s {data_dir} {port}\"\nstop = \"t\"\nprobe = \"http://127.0.0.1:{port}/\"\n",
        )
        .unwrap();
        let d = c.app("x").unwrap().drill.clone().unwrap();
        assert_eq!(d.every, Some(Span::from_hours(7 * 24)));
        assert_eq!(d.probe_timeout, Span::from_mins(5));
        let e = parse(
            "[app.x]\ndata_dir = \"/d\"\nconsistency = \"live\"\n[app.x.drill]\nstart = \"s\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("drill.stop"), "{e}");
        let e = parse(
            "[app.x]\ndata_dir = \"/d\"\nconsistency = \"live\"\n[app.x.drill]\nprobe = \"true\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("drill.start"), "{e}");
    }

    #[test]
    fn errors_name_line_and_expectation() {
        let e = parse("[app.x]\ndata_dir = \"/d\"\nconsistancy = \"live\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holdfast.toml:3:1"), "{e}");
        assert!(e.contains("consistancy"), "{e}");
        let e = parse("[app.x]\ndata_dir = \"/d\"\nconsistency = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:"), "{e}");
        assert!(e.contains("stop"), "{e}");
        let e =
            parse("[app.x]\nprofile = \"dss\"\ndata_dir = \"/d\"\nexclude_tiers = [\"logz\"]\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains(":4: [app.x] exclude_tiers: unknown tier 'logz'"),
            "{e}"
        );
        let e = parse("[app.x]\ndata_dir = \"/d\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("service.stop"), "{e}");
        let e = parse(
            "[app.x]\nprofile = \"dss\"\ndata_dir = \"/d\"\n[[app.x.postgres]]\nurl = \"postgresql://u:secret@h/db\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(":5: [app.x] postgres.url"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let pg = "[app.x]\nprofile = \"dss\"\ndata_dir = \"/d\"\n[[app.x.postgres]]\nurl = \"postgresql://u@h/db\"\n";
        assert_eq!(parse(pg).unwrap().app["x"].postgres[0].compression, 0);
        let e = parse(&format!("{pg}compression = 12\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("postgres.compression: must be 0 (none) to 9"),
            "{e}"
        );
    }

    /// One duration grammar for the whole file: timeouts and retention used to read `m` as
    /// minutes and months respectively; now it is refused wherever it appears.
    #[test]
    fn durations_share_one_grammar() {
        let base = "[app.x]\nprofile = \"dss\"\ndata_dir = \"/d\"\n";
        for (table, key) in [
            ("service", "quiesce_timeout"),
            ("service", "command_timeout"),
            ("retention", "keep_within"),
            ("check", "every"),
        ] {
            let extra = if table == "retention" {
                "keep_last = 1\n"
            } else {
                ""
            };
            let e = parse(&format!("{base}[app.x.{table}]\n{extra}{key} = \"6m\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("6min") && e.contains("6mo"),
                "{table}.{key}: {e}"
            );
            assert!(e.contains(":5:") || e.contains(":6:"), "{e}");
        }
        let c = parse(&format!(
            "{base}[app.x.service]\nquiesce_timeout = \"10min\"\n[app.x.retention]\nkeep_within = \"6mo\"\n"
        ))
        .unwrap();
        let app = &c.app["x"];
        assert_eq!(app.service.quiesce_timeout.as_secs(), 600);
        let within = app.retention.as_ref().unwrap().keep_within.unwrap();
        assert_eq!(within.as_secs(), 180 * 86400);
        assert_eq!(app.service.command_timeout.as_secs(), 300, "default 5min");
    }
}
