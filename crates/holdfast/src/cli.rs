//! Command-line definitions: every flag, its environment variable and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use holdfast_core::span::Span;

pub const EXIT_CODES: &str = "\
EXIT CODES:
    0    success
    1    failure (nothing was changed or written beyond what the message says)
    2    usage error
    3    backup finished, but some files could not be read (listed; snapshot written)
    4    configuration file invalid (file, line and key named)
    5    an application step failed: quiesce check, stop/start, volume snapshot, database dump
         or restore, post-restore step (for a backup, no snapshot was written unless it says so)
    6    restore refused: the backup is from a newer application version than the installed one
    7    preflight failed: something a run needs is missing (data directory, command, volume,
         database connection); the service was not touched
    10   no repository at the location, or not a holdfast repository
    11   repository is locked by another process, or the application's procedure is already
         running (backup --app, upgrade, restore --in-place: one at a time per application)
    12   wrong password
    13   repository format is newer than this holdfast
    14   damaged or missing data: found by check or restore, or a snapshot, index or tree that
         a command needs cannot be read (commands that delete data then delete nothing)
    130  interrupted (SIGINT/SIGTERM); earlier snapshots are untouched";

#[derive(Parser, Debug)]
#[command(
    name = "holdfast",
    version,
    about = "Backup and restore for an application's data directory",
    long_about = "holdfast keeps deduplicated, compressed and encrypted snapshots of directories \
in a repository on local disk. Each backup after the first reads only files that changed.\n\n\
Repository and password come from --repo/HOLDFAST_REPO and, in this order, \
--password-file/HOLDFAST_PASSWORD_FILE, HOLDFAST_PASSWORD, --password-command/HOLDFAST_PASSWORD_COMMAND, \
or a terminal prompt.",
    after_long_help = EXIT_CODES,
    after_help = "Run `holdfast help <command>` for details; `--help` lists exit codes."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Configuration file (default /etc/holdfast/holdfast.toml when it exists)
    #[arg(long, env = "HOLDFAST_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Repository location: a directory, or s3://bucket/prefix (credentials from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY or AWS_PROFILE); default: `repository` in the configuration
    #[arg(
        short = 'r',
        long,
        env = "HOLDFAST_REPO",
        global = true,
        value_name = "LOCATION"
    )]
    pub repo: Option<String>,
    /// S3 endpoint for s3:// repositories (MinIO, Ceph RGW, Garage...; default AWS)
    #[arg(long, env = "HOLDFAST_S3_ENDPOINT", global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default AWS_REGION, else us-east-1)
    #[arg(long, env = "HOLDFAST_S3_REGION", global = true, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Address buckets as bucket.host instead of host/bucket (path style, the default)
    #[arg(long, global = true)]
    pub s3_virtual_host_style: bool,
    /// Read the password from the first line of FILE
    #[arg(
        long,
        env = "HOLDFAST_PASSWORD_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Run COMMAND (with sh -c) and use the first line it prints as the password
    #[arg(
        long,
        env = "HOLDFAST_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND"
    )]
    pub password_command: Option<String>,
    /// Print one JSON document (or JSON lines for listings) on stdout and nothing else
    #[arg(long, global = true)]
    pub json: bool,
    /// After a run, write Prometheus textfile-collector metrics to FILE (default: the
    /// configuration's `metrics_file`)
    #[arg(
        long,
        env = "HOLDFAST_METRICS_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub metrics_file: Option<PathBuf>,
    /// Do not use or fill the local metadata cache
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print only errors and warnings
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When stderr is not a terminal (a systemd service, a log file), print one progress line
    /// to stderr every DURATION during backups and restores, e.g. 1min. Off by default, so
    /// that cron does not mail the lines; on a terminal the progress bar is drawn instead
    #[arg(
        long,
        env = "HOLDFAST_PROGRESS_INTERVAL",
        global = true,
        value_name = "DURATION"
    )]
    pub progress_interval: Option<Span>,
    /// More detail on stderr (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(InitArgs),
    /// Back up files and directories into a new snapshot
    #[command(
        after_long_help = "Files whose size, mtime, ctime and inode are unchanged since the parent snapshot \
(the latest one with the same host and paths) are not read again.\n\n\
With --app NAME, the application's procedure from the configuration runs: in consistency mode `stop`, the \
quiesce check, stopping the service, backing up the data directory and its databases together, and starting \
the service again as soon as the data is read (also after a failure or an interrupt); in mode `snapshot`, an \
atomic volume snapshot (btrfs, LVM or custom commands) is backed up and destroyed; in mode `live`, files that \
change while read are read again and the rest is reported. The snapshot records the application, its version, \
the mode, how it went, the downtime and the excluded tiers. --profile, --consistency, --exclude-tier and \
--postgres give the same for one directory without a configuration file.\n\n\
Exclude patterns: without '/', a pattern matches an entry's name anywhere ('*.log', 'tmp'); with '/', \
the whole path, absolute or relative to the backed-up directory ('/srv/dss/data/tmp', 'jobs/*/output'); \
'**' crosses directories.\n\nExit code 3 means the snapshot was written but some files could not be read."
    )]
    Backup(BackupArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// List the entries of a snapshot, recursively below PATH
    Ls(LsArgs),
    /// Find files and folders by name or path in every snapshot, newest first
    #[command(
        after_long_help = "A PATTERN without a slash matches names (`*.csv`, `params`); with a slash it matches paths, \
at any depth (`projects/*/params`) or, with a leading slash, from the snapshot's root (`/data/projects/*/params`). `*` \
stops at a slash, `**` does not; quote patterns so the shell leaves them alone. Each snapshot is listed with what it \
holds that matches (type, mode, size, modification time, path); directories shared with a snapshot already searched \
are not searched again. Example: holdfast find --app design 'projects/CHURN/**/*.json'"
    )]
    Find(FindArgs),
    /// Add, remove or set tags of existing snapshots
    #[command(
        after_long_help = "A snapshot is named by its content, so a tagged snapshot gets a new id; the new snapshot \
records the one it replaces, is stored first, and only then is the old one deleted (a crash in between leaves both; \
listings show the new one, and the next tag or forget deletes the old). The old id still finds the snapshot. \
Example, to keep the last backup before an upgrade out of retention: holdfast tag latest --app design --add keep \
(with keep_tags = [\"keep\"] or forget --keep-tag keep)."
    )]
    Tag(TagArgs),
    /// Take files out of existing snapshots (e.g. a credentials file backed up by mistake)
    #[command(
        after_long_help = "Patterns have the grammar of backup --exclude: without a slash they match names anywhere, \
with a slash whole paths, absolute or relative to the backed-up directory; a directory goes with everything below it. \
Each snapshot that loses something gets a new id: the new snapshot, which records the one it replaces, is stored \
first, and only then is the old one deleted (the old id still finds it). Database dumps stored with a snapshot are \
left as they are. The removed data stays in the repository until prune finds nothing else refers to it. Example: \
holdfast rewrite --dry-run latest --exclude 'config/secrets.json', then without --dry-run, then holdfast prune."
    )]
    Rewrite(RewriteArgs),
    /// Mount snapshots as a read-only file system (FUSE), to browse and copy files out
    #[command(
        after_long_help = "With a SNAPSHOT (an id prefix, or latest), its content is at DIR. Without one, DIR holds \
snapshots/<time>-<id>/ for every snapshot the filters select, and hosts/<host>/ and apps/<app>/ with a link per \
snapshot and one named latest. Owners, modes, times, symlinks, hard links and extended attributes are as stored; \
reads fetch only the chunks they need (ranged reads on object storage). The mount holds no repository lock, so \
backups and prune go on meanwhile; a file whose data a prune removed fails to read (EIO) with a log line. Runs in \
the foreground until Ctrl-C, SIGTERM, or umount DIR. Needs /dev/fuse, and root or fusermount3 (Debian: fuse3). \
Example: holdfast mount --app design latest /mnt/backup, then cp -a /mnt/backup/projects/CHURN /tmp/"
    )]
    Mount(MountArgs),
    /// Restore drill: prove that a snapshot restores and the application starts on it
    #[command(
        after_long_help = "Restores the snapshot (default: the application's latest) into a scratch directory with \
verification, each database dump into a scratch database on its server (holdfast_drill_<app>_<time>), compared with \
the table list recorded at dump time and the configured probe queries, then starts the application on the copy with \
[app.NAME.drill] start (with {data_dir} and {port}), waits for its probe and stops it. Everything made is removed \
afterwards, also on failure or interruption; production is never touched. The verdict and times are stored in the \
repository (snapshots shows them), in the run log and the metrics. Exit code 0 when the drill passed, 1 when it failed. \
With [app.NAME.drill] every = \"7d\", holdfast run drills when due."
    )]
    Drill(DrillArgs),
    /// Show what changed between two snapshots
    Diff(DiffArgs),
    /// Restore a snapshot, or part of it, into a directory
    #[command(
        after_long_help = "A snapshot of one directory restores that directory's content directly into \
--target (so `restore latest --target /srv/dss/data` rebuilds a data directory in place of the original); \
a snapshot of several paths restores each under its full path. The target must be empty unless --overwrite. \
Nothing is ever written outside the target. Each file, link and special file is made under a temporary \
name beside it (.holdfast-restore-RANDOM) and renamed into place once complete: a restore that fails (full \
disk, damaged pack, interrupt) leaves no half-written file, and --overwrite replaces what is in the way only \
with its complete replacement. Only a restore killed outright (SIGKILL, power cut) can leave such temporary \
files behind.\n\n\
With --app NAME --in-place (pristine restore): the service is stopped, the current databases are dumped to \
DATA_DIR.before-restore-YYYYMMDD-HHMMSS.databases, the current content of the data directory is moved to the \
dated sibling DATA_DIR.before-restore-YYYYMMDD-HHMMSS (never deleted), the snapshot's files and databases are restored, and the service is started. \
A failure leaves the service stopped and says where the previous content is.\n\n\
With --target on another machine or location: files go into the target; database dumps go into --db-target, \
into the application's configured databases (with --app; a non-empty one is refused unless --clean), or as \
files into --dumps-to; then the post-restore step (e.g. the DSS installer in upgrade mode) runs. Restoring onto \
an installed version older than the backup's is refused (exit code 6) unless --force-version."
    )]
    Restore(RestoreArgs),
    /// Verify the repository: structure, and with --read-data every byte
    #[command(
        after_long_help = "Check reads the repository itself, not the local cache (--with-cache to use it). It reports snapshot files that cannot be read or do not match their names, damaged index files, packs missing from storage or not indexed, trees and blobs that snapshots use but the index lacks, and with --read-data every pack whose bytes, header or blobs are damaged, naming the snapshots and paths affected. It also warns about key files others can read and temporary files left by killed writers. Each kind of damage comes with the command that deals with it (repair index, repair snapshots, forget ID). Exit code 14 when anything is damaged."
    )]
    Check(CheckArgs),
    /// Repair a damaged repository: rebuild the index, or rewrite damaged snapshots
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Sizes, deduplication and compression
    Stats(StatsArgs),
    /// Manage the passwords (key files) of the repository
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print decrypted internals, for debugging
    Cat(CatArgs),
    /// Remove stale locks (of dead processes or not refreshed for 30 minutes)
    Unlock(UnlockArgs),
    /// Remove snapshots by a retention policy (or by id); --prune also frees their data
    #[command(
        after_long_help = "Snapshots are grouped by host, paths and application; in each group, newest first, \
--keep-daily 7 keeps the newest snapshot of each of the 7 most recent days that have one (likewise hourly, weekly, \
monthly, yearly); --keep-last N keeps the N newest; --keep-within 4d keeps all within 4 days of the group's newest \
snapshot; --keep-tag T keeps all tagged T. A snapshot is kept if any rule keeps it. --dry-run prints every decision \
and the rule behind it, changing nothing."
    )]
    Forget(ForgetArgs),
    /// Delete data no snapshot uses and repack mostly-unused packs
    #[command(
        after_long_help = "Takes the exclusive lock: backups wait or fail with exit code 11 meanwhile. \
A prune killed at any moment leaves the repository consistent; running it again finishes the job."
    )]
    Prune(PruneArgs),
    /// Write a snapshot, or a directory of it, as a tar archive that GNU tar restores
    #[command(
        after_long_help = "Extract with `tar -xpf FILE --xattrs --xattrs-include='*' --numeric-owner` \
(as root for owners and device nodes) to get the same tree back: modes, owners, nanosecond times, symlinks, \
hardlinks, sparse files, xattrs and ACLs. The format follows -o's extension unless --format is given."
    )]
    Export(ExportArgs),
    /// Turn tar archives (plain, .gz, .zst) into snapshots, e.g. those of a tar-in-cron script
    #[command(
        after_long_help = "Each archive becomes one snapshot, dated from a YYYY-MM-DD in its file name \
(backup-dss-data-2026-11-20.tar.gz), else from its newest entry. Archives are imported oldest first and deduplicate \
against each other. Absolute names, '..' components and links leaving the archive are refused with the entry named; \
a truncated or corrupt archive is an error and writes no snapshot."
    )]
    Import(ImportArgs),
    /// Check the configuration file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show what `backup --app` would do, and the size of every tier, kept and excluded
    Plan(PlanArgs),
    /// Back up an application tagged pre-upgrade, then run its upgrade, in one stop window
    #[command(
        after_long_help = "The procedure recommends a backup before every upgrade. `holdfast upgrade --app design -- \
/opt/dataiku-dss-14.0.0/installer.sh -d /srv/dss/data -u` runs, in one stop window: preflight, quiesce check, \
stop, a backup in stop mode tagged `pre-upgrade` (kept out of ordinary retention), the command (as the service's \
user), start. If the backup fails the service is started again and nothing is upgraded. If the command fails the \
service is left stopped and a marker is set: until `--resume` (run the command again, then start), `--abandon` \
(clear the marker) or an in-place restore of the pre-upgrade snapshot, scheduled runs make no backup and never \
start the service, and fail with exit code 5 naming these three ways out."
    )]
    Upgrade(UpgradeArgs),
    /// Run an application's scheduled job: backup, retention policy, check when due
    #[command(
        after_long_help = "The job a schedule runs: `backup --app NAME`, then the application's [retention] policy \
(forget, and prune when configured; pre-upgrade snapshots stay), then `check` with the configured \
read_data_subset when `check.every` has passed since the last checked run. Each run appends one JSON line to the \
run log (`holdfast runs`), runs the configured hooks with the result in HOLDFAST_RESULT, HOLDFAST_EXIT_CODE, \
HOLDFAST_SNAPSHOT, HOLDFAST_ERROR..., and writes --metrics-file. A retention step that cannot get the exclusive \
lock is a warning: the snapshot is written and the next run forgets what is due."
    )]
    Run(RunArgs),
    /// Show the run log: one line per run with its result
    Runs(RunsArgs),
    /// Show or install the configured schedules (systemd timers or cron)
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Run the configured schedules in the foreground (for containers)
    #[command(
        after_long_help = "Runs each application's job at the times its `schedule` gives, one at a time. A run missed \
while the daemon was down (a scheduled time after the last logged run) is caught up once at start. On SIGTERM or \
SIGINT the current run is told to stop and waited for, so that an application stopped for its backup is started \
again, then the daemon exits."
    )]
    Daemon(DaemonArgs),
    /// Serve the web console: overview, runs, snapshot browser and downloads, actions
    #[command(
        after_long_help = "Serves, on 127.0.0.1:8420 by default, an overview of every application on every host (last backup, downtime, next run, last drill, red/amber/green by each schedule), the run log of every host, a snapshot browser with downloads (a file, or a folder as a streamed tar.gz) and diffs, and 'back up now' / 'drill now' for the applications configured here, run exactly as a scheduled run (holdfast run/drill as a child, under the same locks), with live progress.\n\nAlways authenticated: the access token is kept in <state_dir>/console-token (created 0600 at the first start, which prints the login URL); a password can be added as an Argon2 hash (`holdfast serve --hash-password`, then `[console] password_hash`). Scripts read the JSON API under /api/ with `Authorization: Bearer TOKEN`. An address other than loopback needs --tls-cert and --tls-key, or --insecure-http behind a TLS proxy. Every flag has a key of the same name in `[console]`. On SIGTERM or SIGINT, running actions are told to stop and waited for. See docs/console.md."
    )]
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell)
    #[command(
        after_long_help = "Install for one user, e.g.:\n  holdfast completions bash > ~/.local/share/bash-completion/completions/holdfast\n  \
holdfast completions zsh > ~/.zfunc/_holdfast   (with fpath+=~/.zfunc before compinit)\n  \
holdfast completions fish > ~/.config/fish/completions/holdfast.fish"
    )]
    Completions(CompletionsArgs),
    /// Write man pages for holdfast and each of its commands (holdfast-COMMAND.1) into DIR
    #[command(
        after_long_help = "After cargo install: holdfast man ~/.local/share/man/man1 (then `man holdfast-backup`). \
System-wide: holdfast man /usr/local/share/man/man1"
    )]
    Man(ManArgs),
    /// Copy snapshots from another repository into this one (e.g. local to S3, off site)
    #[command(
        after_long_help = "`holdfast --repo s3://bucket/offsite copy --from-repo /backups/repo` copies every snapshot \
the destination does not have yet (or only the SNAPSHOTs named), deduplicating against the data the destination \
already holds. The source password comes from --from-password-file, --from-password-command or \
HOLDFAST_FROM_PASSWORD, else the destination's password is tried; --from-s3-* default to the destination's \
settings, and so do the source's S3 keys unless HOLDFAST_FROM_AWS_ACCESS_KEY_ID and \
HOLDFAST_FROM_AWS_SECRET_ACCESS_KEY give its own (e.g. from an on-site MinIO to AWS). Every blob is \
decrypted from the source and re-encrypted for the destination (keys differ); a copy \
interrupted at any point leaves both repositories consistent and is finished by running it again."
    )]
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing)
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source snapshots (id prefixes or `latest`); default: all, filtered by --host/--tag/--path
    pub snapshots: Vec<String>,
    /// The source repository
    #[arg(long, value_name = "LOCATION")]
    pub from_repo: String,
    /// Read the source password from FILE
    #[arg(long, value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run COMMAND for the source password
    #[arg(long, value_name = "COMMAND")]
    pub from_password_command: Option<String>,
    /// S3 endpoint of the source, when it differs
    #[arg(long, value_name = "URL")]
    pub from_s3_endpoint: Option<String>,
    /// S3 region of the source, when it differs
    #[arg(long, value_name = "REGION")]
    pub from_s3_region: Option<String>,
    /// Every DURATION, write an index of the data copied so far, so that a copy
    /// killed midway keeps it (as `backup --checkpoint-interval`)
    #[arg(long, default_value_t = CHECKPOINT_INTERVAL, value_name = "DURATION")]
    pub checkpoint_interval: Span,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The configured application
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub app: Option<String>,
    /// Every configured application, one after the other
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    /// Only runs of this application
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// How many of the latest runs to show
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub last: usize,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Each scheduled application's next run times, in local time
    List {
        /// How many next runs to show
        #[arg(long, default_value_t = 3, value_name = "N")]
        count: usize,
        #[arg(long, value_name = "NAME")]
        app: Option<String>,
    },
    /// Write systemd service and timer units (or, with --cron, an /etc/cron.d file)
    Install {
        /// Write a cron.d file instead of systemd units
        #[arg(long)]
        cron: bool,
        /// Directory to write into (default /etc/systemd/system, or /etc/cron.d)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Only this application
        #[arg(long, value_name = "NAME")]
        app: Option<String>,
        /// Print the files instead of writing them
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
pub struct DaemonArgs {}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address and port to listen on [default: `[console] listen`, else 127.0.0.1:8420]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// No actions: overview, browsing and downloads only
    #[arg(long)]
    pub read_only: bool,
    /// Serve plain HTTP on an address other than loopback (behind a TLS proxy)
    #[arg(long)]
    pub insecure_http: bool,
    /// PEM certificate chain: serve HTTPS (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The access token's file [default: <state_dir>/console-token]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Read a password (prompted, or the first line of standard input), print its Argon2
    /// hash for `[console] password_hash`, and exit
    #[arg(long)]
    pub hash_password: bool,
}

impl ServeArgs {
    /// The flags as a `[console]` section, to lay over the configuration's.
    pub fn as_console(&self) -> holdfast_app::config::ConsoleConfig {
        holdfast_app::config::ConsoleConfig {
            listen: self.listen,
            token_file: self.token_file.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            insecure_http: self.insecure_http,
            read_only: self.read_only,
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// The configured application
    #[arg(long, value_name = "NAME")]
    pub app: String,
    /// Longest the upgrade command may take
    #[arg(long, default_value = "2h", value_name = "DURATION")]
    pub timeout: Span,
    /// After a failed upgrade: run the upgrade command again on the stopped service (no new
    /// backup), then start the service if it ran before
    #[arg(long, conflicts_with = "abandon")]
    pub resume: bool,
    /// After a failed upgrade: clear its marker without doing anything else (the service
    /// stays as it is)
    #[arg(long)]
    pub abandon: bool,
    /// The upgrade command and its arguments (after --)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Parse and validate the configuration; every error names file, line and key
    Check,
    /// Write a commented starting configuration (and a password file) that `config check`
    /// accepts
    #[command(
        after_long_help = "Writes the file named by --config (default /etc/holdfast/holdfast.toml) with the \
repository (--repo, else /var/backups/holdfast), the password file (created 0600 with a random password unless it \
exists), one application with its profile, consistency mode, tiers left out, the documented schedule (Monday to \
Friday at 6:15), a retention policy and a weekly check, each with a comment saying what else it could be. An \
existing configuration is left alone unless --force. Then: holdfast init; holdfast plan --app NAME; holdfast \
schedule install."
    )]
    Init(ConfigInitArgs),
}

#[derive(Args, Debug)]
pub struct ConfigInitArgs {
    /// The application's data directory (absolute)
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// What holdfast knows about the application: dss, or generic (nothing)
    #[arg(long, default_value = "generic", value_parser = parse_profile)]
    pub profile: holdfast_app::profile::ProfileName,
    /// Name of the application in the configuration (default: design for dss, app otherwise)
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Where the repository password is kept
    #[arg(long, value_name = "FILE", default_value = "/etc/holdfast/password")]
    pub password_file: PathBuf,
    /// Replace an existing configuration file
    #[arg(long)]
    pub force: bool,
    /// Print the configuration instead of writing anything
    #[arg(long)]
    pub print: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The configured application
    #[arg(long, value_name = "NAME")]
    pub app: String,
    /// Consistency mode to plan for: stop, snapshot or live (default: the configured one)
    #[arg(long, value_name = "MODE")]
    pub consistency: Option<holdfast_app::config::Mode>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Archives to import
    #[arg(required = true, value_name = "ARCHIVE")]
    pub archives: Vec<PathBuf>,
    /// Path to record in the snapshots (e.g. /srv/dss/data, to group them with regular backups)
    #[arg(long, value_name = "PATH")]
    pub as_path: Option<String>,
    /// Drop this many leading components from entry names
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub strip_components: usize,
    /// Tag the snapshots (repeatable; `imported` is always added)
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Record this host name
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Accept symlinks whose targets are absolute paths: the default (a DSS data directory
    /// links code environments to system interpreters; a target is data, and restore never
    /// follows a link). Kept for scripts that pass it
    #[arg(long, conflicts_with = "refuse_absolute_symlinks")]
    pub allow_absolute_symlinks: bool,
    /// Refuse symlinks whose targets are absolute paths. Entry names that escape (`..`,
    /// absolute names, links used as directories) are refused either way
    #[arg(long)]
    pub refuse_absolute_symlinks: bool,
    /// File the snapshots as this application's (from the configuration): recorded with its
    /// name and data directory (the default --as-path), so its retention policy applies
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Refuse an archive with an entry larger than this (K, M, G, T: powers of 1024), by the
    /// size its header declares, before reading it. A sparse entry's holes are not stored in
    /// the archive, so a few bytes of a hostile header can declare an exabyte of zeros.
    #[arg(long, default_value = "1T", value_name = "SIZE", value_parser = parse_byte_size)]
    pub max_file_size: u64,
    /// Refuse an archive whose entries add up to more than this (K, M, G, T: powers of 1024):
    /// a compressed archive of zeros expands about a thousandfold, so a small file can claim
    /// any amount of work. Checked against declared sizes before reading, and while reading
    #[arg(long, default_value = "16T", value_name = "SIZE", value_parser = parse_byte_size)]
    pub max_total_size: u64,
    /// Every DURATION, write an index of the data stored so far, so that an import
    /// killed midway keeps it (as `backup --checkpoint-interval`)
    #[arg(long, default_value_t = CHECKPOINT_INTERVAL, value_name = "DURATION")]
    pub checkpoint_interval: Span,
    /// Read, chunk, compress and encrypt as a backup would, and say what it would read, leave
    /// out and store; write nothing to the repository or its cache. With --app (or --profile):
    /// show the plan, as `holdfast plan` does, and never touch the service
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Snapshot id prefix, or `latest`
    pub snapshot: String,
    /// Directory inside the snapshot (default: all of it)
    #[arg(default_value = "")]
    pub path: String,
    /// Archive format
    #[arg(long, value_parser = ["tar", "tar.gz", "tar.zst"])]
    pub format: Option<String>,
    /// Output file, or - for standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: String,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Forget exactly these snapshots (id prefixes) instead of applying a policy
    pub snapshots: Vec<String>,
    /// The same rules as an application's `[retention]` table
    #[command(flatten)]
    pub rules: holdfast_core::retention::ForgetRules,
    #[command(flatten)]
    pub filter: Filter,
    /// Show what would be removed, and why, without removing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Show what would be deleted and repacked, without changing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Repack packs with at least this share of unused bytes (0% repacks any with waste)
    #[arg(long, default_value = "20%", value_name = "PERCENT")]
    pub repack_threshold: holdfast_core::share::Share,
}

/// Default of `backup --checkpoint-interval`: at most five minutes of uploads are lost to a
/// killed backup, for one small index file per five minutes of a long run.
pub const CHECKPOINT_INTERVAL: Span = Span::from_mins(5);

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Argon2id memory in MiB for the new key
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub argon2_memory: u32,
    /// Argon2id passes for the new key
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub argon2_iterations: u32,
    /// Target pack size in MiB
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub pack_size: u64,
    /// Average chunk size in KiB, a power of two from 64 to 4096 (minimum a quarter of it,
    /// maximum four times). Smaller chunks deduplicate edits finer; every chunk costs about
    /// 57 bytes in the index table each command maps from the cache. 512 suits data
    /// directories up to a few TB; consider 2048 for a repository heading towards 100 TB (see
    /// docs/chunking.md).
    #[arg(long, default_value_t = 512, value_name = "KIB", value_parser = parse_chunk_size)]
    pub chunk_size: u32,
    /// zstd level (1-19). Compression is about half of a first backup's CPU time: level 1
    /// is about 13% faster and stores about 11% more (table in docs/chunking.md)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression: i32,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Filter {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable: all must match)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots of this path (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up (with --app: the configured data directory)
    #[arg(required_unless_present = "app", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Run the backup procedure of this configured application
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Application profile for an ad-hoc procedure on one data directory
    #[arg(long, value_parser = ["dss", "generic"])]
    pub profile: Option<String>,
    /// Consistency mode: stop, snapshot or live (overrides the configuration)
    #[arg(long, value_name = "MODE")]
    pub consistency: Option<holdfast_app::config::Mode>,
    /// Leave out a tier of the profile (repeatable; replaces the configured list)
    #[arg(long, value_name = "TIER")]
    pub exclude_tier: Vec<String>,
    /// Dump this PostgreSQL database into the same snapshot (repeatable); password from PGPASSFILE
    #[arg(long, value_name = "URL")]
    pub postgres: Vec<String>,
    /// Leave out entries matching GLOB (repeatable)
    #[arg(short, long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from FILE, one a line (repeatable)
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Leave out directories that contain a file named NAME (repeatable)
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Do not descend into other filesystems (mount points are kept, empty)
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Tag the snapshot (repeatable)
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Record this host name instead of the machine's
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Compare against this snapshot instead of the latest of the same host and paths
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read every file, ignoring the parent snapshot
    #[arg(long)]
    pub force: bool,
    /// Every DURATION, write an index of the data stored so far. A backup killed
    /// midway (kill -9, power loss) then keeps what it uploaded up to the last checkpoint: the
    /// next run does not read it into the repository again. 0 writes one after every pack
    #[arg(long, default_value_t = CHECKPOINT_INTERVAL, value_name = "DURATION")]
    pub checkpoint_interval: Span,
    /// Read, chunk, compress and encrypt as a backup would, and say what it would read, leave
    /// out and store; write nothing to the repository or its cache. With --app (or --profile):
    /// show the plan, as `holdfast plan` does, and never touch the service
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

impl BackupArgs {
    /// `backup --app NAME` with every other option at its default: what a scheduled run and
    /// an upgrade's own backup run.
    pub fn for_app(name: &str) -> BackupArgs {
        BackupArgs {
            paths: Vec::new(),
            app: Some(name.to_string()),
            profile: None,
            consistency: None,
            exclude_tier: Vec::new(),
            postgres: Vec::new(),
            exclude: Vec::new(),
            exclude_file: Vec::new(),
            exclude_if_present: Vec::new(),
            one_file_system: false,
            tag: Vec::new(),
            host: None,
            parent: None,
            force: false,
            checkpoint_interval: CHECKPOINT_INTERVAL,
            dry_run: false,
        }
    }
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Only snapshots of this application
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// List the volume snapshots the provider keeps for --app instead
    #[arg(long, requires = "app")]
    pub provider: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id prefix, or `latest`
    pub snapshot: String,
    /// Directory inside the snapshot
    #[arg(default_value = "")]
    pub path: String,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Glob over names, or over paths when it contains a slash (several: any may match)
    #[arg(required = true, value_name = "PATTERN", value_parser = parse_pattern)]
    pub patterns: Vec<holdfast_core::find::Pattern>,
    /// Only these snapshots (id prefix, or `latest`; repeatable)
    #[arg(long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Only snapshots of this application
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("edit").required(true).multiple(true).args(["add", "remove", "set"])))]
pub struct TagArgs {
    /// Snapshot id prefixes, or `latest` (of the snapshots the filters select)
    #[arg(required = true, value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add this tag (repeatable)
    #[arg(long, value_name = "TAG")]
    pub add: Vec<String>,
    /// Remove this tag (repeatable)
    #[arg(long, value_name = "TAG")]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable; `--set ''` clears them)
    #[arg(long, value_name = "TAG", conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
    /// `latest` of this application
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("patterns").required(true).multiple(true).args(["exclude", "exclude_file"])))]
pub struct RewriteArgs {
    /// Snapshot id prefixes, or `latest` (of the snapshots the filters select)
    #[arg(required = true, value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Take out entries matching GLOB (repeatable)
    #[arg(short, long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read patterns from FILE, one a line (repeatable)
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Show what would be taken out; write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// `latest` of this application
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// [SNAPSHOT] DIR: a snapshot id prefix or `latest`, then the mount point
    #[arg(required = true, num_args = 1..=2, value_name = "SNAPSHOT] [DIR")]
    pub args: Vec<String>,
    /// Let other users in; the kernel still checks each entry's owner and mode (a non-root
    /// user needs user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    pub allow_other: bool,
    /// `latest` of this application, and only its snapshots when mounting all
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// The configured application
    #[arg(long, value_name = "NAME")]
    pub app: String,
    /// Snapshot id prefix (default: the application's latest)
    pub snapshot: Option<String>,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub from: String,
    pub to: String,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id prefix, or `latest`
    pub snapshot: String,
    /// Directory to restore into (created if missing)
    #[arg(short, long, value_name = "DIR", required_unless_present_any = ["in_place", "dumps_to", "db_target"])]
    pub target: Option<PathBuf>,
    /// The configured application: its databases, version rule and post-restore step apply
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Pristine restore into the application's data directory: stop, move the current content
    /// aside, dump the current databases next to it, restore files and databases, start
    #[arg(long, requires = "app", conflicts_with_all = ["target", "db_target", "dumps_to"])]
    pub in_place: bool,
    /// Restore the snapshot's database dumps into this database (created if missing)
    #[arg(long, value_name = "URL")]
    pub db_target: Option<String>,
    /// Write the snapshot's database dumps as files into DIR
    #[arg(long, value_name = "DIR")]
    pub dumps_to: Option<PathBuf>,
    /// Replace the objects of a non-empty target database
    #[arg(long)]
    pub clean: bool,
    /// Restore even onto an installation older than the backup
    #[arg(long)]
    pub force_version: bool,
    /// With --in-place, restore a snapshot recorded as another application's (refused
    /// otherwise: govern's data put in place of design's, and design started on it)
    #[arg(long)]
    pub allow_other_app: bool,
    /// Restore only entries matching GLOB, with the directories leading to them (repeatable)
    #[arg(short, long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip entries matching GLOB (repeatable)
    #[arg(short, long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Restore into a non-empty target, replacing files in the way
    #[arg(long)]
    pub overwrite: bool,
    /// Say what would be written, replaced or refused, and check that the data is there;
    /// change nothing. With --app: the steps too (stop, move aside, databases), never taken
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Re-read every restored file and compare it with the snapshot
    #[arg(long)]
    pub verify: bool,
    /// Restore owners by stored uid/gid even where a user or group of the stored name exists
    #[arg(long)]
    pub numeric_owner: bool,
    #[command(flatten)]
    pub filter: Filter,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also use the local cache (by default check reads every snapshot, index file and tree
    /// from the repository itself, so that it verifies what is stored, not an earlier copy)
    #[arg(long)]
    pub with_cache: bool,
    /// Read and verify all stored data
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify a part of the data: a percentage (`10%`) or a fraction (`1/7`)
    #[arg(long, value_name = "SUBSET", conflicts_with = "read_data")]
    pub read_data_subset: Option<holdfast_core::share::Subset>,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the packs' own headers
    #[command(
        after_long_help = "Packs carry their own encrypted headers, so the index can always be rebuilt. What readable index files list is kept (for packs still stored); every stored pack they do not list is indexed again from its header (two ranged reads each); packs that storage no longer has are dropped. The new index supersedes every old index file, and damaged ones are removed once it is stored. Run it when check reports a damaged index file, before any prune: packs that only a damaged index file listed look unused to prune."
    )]
    Index,
    /// Find snapshots that use missing data; with --apply, rewrite them without it
    #[command(
        after_long_help = "Dry run by default: lists each snapshot that uses data the index does not list or storage no longer has, with the paths that are lost, and each snapshot file that cannot be read. With --apply, each such snapshot is rewritten without what is lost (a file with missing content is left out, a folder whose listing is lost becomes empty), tagged `repaired` and naming the original, which is removed once the new one is stored; snapshot files that cannot be read are removed. Run `repair index` first when check reports a damaged index file."
    )]
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Args, Debug)]
pub struct RepairSnapshotsArgs {
    /// Rewrite (and remove) the damaged snapshots instead of listing them
    #[arg(long)]
    pub apply: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Only these snapshots (default: all)
    pub snapshots: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a password
    Add(NewPassword),
    /// List key files
    List,
    /// Remove a key file (not the one in use)
    Remove { id: String },
    /// Change the password in use (adds a new key, removes the current one)
    Passwd(NewPassword),
}

#[derive(Args, Debug)]
pub struct NewPassword {
    /// Read the new password from FILE (else prompt twice)
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub argon2_memory: u32,
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub argon2_iterations: u32,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// config | snapshot ID | index | pack ID | tree ID | blob ID | keys | locks
    pub what: String,
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, live ones too
    #[arg(long)]
    pub all: bool,
}

fn parse_chunk_size(s: &str) -> std::result::Result<u32, String> {
    let kib: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of KiB"))?;
    if !(64..=4096).contains(&kib) || !kib.is_power_of_two() {
        return Err(format!(
            "{kib} KiB: the average chunk size must be a power of two from 64 to 4096"
        ));
    }
    Ok(kib)
}

/// `123`, `64K`, `10M`, `2G`, `1T` (powers of 1024).
fn parse_byte_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("'{s}': the unit must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (a number, optionally with K, M, G or T)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn parse_profile(s: &str) -> Result<holdfast_app::profile::ProfileName, String> {
    match s {
        "dss" => Ok(holdfast_app::profile::ProfileName::Dss),
        "generic" => Ok(holdfast_app::profile::ProfileName::Generic),
        _ => Err(format!("unknown profile '{s}' (known: dss, generic)")),
    }
}

fn parse_pattern(s: &str) -> Result<holdfast_core::find::Pattern, String> {
    holdfast_core::find::Pattern::new(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_sizes() {
        assert_eq!(super::parse_byte_size("123"), Ok(123));
        assert_eq!(super::parse_byte_size("64K"), Ok(64 << 10));
        assert_eq!(super::parse_byte_size("1t"), Ok(1 << 40));
        assert!(super::parse_byte_size("1X").is_err());
        assert!(super::parse_byte_size("M").is_err());
        assert!(super::parse_byte_size("99999999999T").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
