//! Reaching a repository: where it is and which password opens it.
//!
//! Passwords never travel on the command line (where `ps` shows them): they come from a file,
//! an environment variable, a command (a secrets manager) or a terminal prompt, in that order.

use std::path::{Path, PathBuf};
use std::process::Command;

use holdfast_core::storage::{S3Credentials, S3Options, Storage};
use holdfast_core::{Error, Repository, Result};

#[derive(Clone, Debug)]
pub enum PasswordSource {
    File(PathBuf),
    /// The password itself, taken from the environment.
    Value(String),
    Command(String),
    Prompt,
}

#[derive(Clone, Debug)]
pub struct Access {
    pub repo: String,
    pub password: PasswordSource,
    pub use_cache: bool,
    pub s3: S3Settings,
}

/// How to reach an `s3://` repository. Credentials: the AWS variables when set, else the keys
/// given here, else a profile of the AWS shared files (`AWS_PROFILE`, else `profile` here).
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:9000`; AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `bucket.host` addressing instead of `host/bucket`.
    #[serde(default)]
    pub virtual_host_style: bool,
    /// Requests in flight at once (default 16).
    pub max_requests: Option<usize>,
    /// Retries of a request that failed in a way worth retrying (default 8).
    pub max_retries: Option<usize>,
    /// A profile of `~/.aws/credentials` and `~/.aws/config`; `AWS_PROFILE` wins.
    pub profile: Option<String>,
    /// An access key, with its secret inline or (better) in a file of its own.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Keys given for this one repository (the source of a `copy`): they win over the
    /// environment and the file, which describe the main repository.
    #[serde(skip)]
    pub explicit: Option<S3Credentials>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("virtual_host_style", &self.virtual_host_style)
            .field("max_requests", &self.max_requests)
            .field("max_retries", &self.max_retries)
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("explicit", &self.explicit)
            .finish()
    }
}

impl S3Settings {
    /// The keys named here, unless the AWS variables name some (they win, as flags do over
    /// the file); an id without a secret, or a secret given twice, is a configuration error.
    pub fn credentials(&self) -> Result<Option<S3Credentials>> {
        if let Some(c) = &self.explicit {
            return Ok(Some(c.clone()));
        }
        if let Some(p) = self.problems().into_iter().next() {
            return Err(Error::Invalid(format!("[s3] {p}")));
        }
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let env_has_keys = set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY");
        let secret = match (&self.secret_access_key, &self.secret_access_key_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(f)) => Some(read_secret_file(f)?),
            (None, None) => None,
        };
        match (&self.access_key_id, secret) {
            (Some(_), Some(_)) if env_has_keys => Ok(None),
            (Some(id), Some(secret)) => Ok(Some(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret,
            })),
            _ => Ok(None),
        }
    }

    /// What is wrong with these settings, found without reading any file: `config check`
    /// reports it, so that it is not the first night's run against S3 that finds it.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let has_secret = self.secret_access_key.is_some() || self.secret_access_key_file.is_some();
        if self.secret_access_key.is_some() && self.secret_access_key_file.is_some() {
            out.push("has both secret_access_key and secret_access_key_file: keep one".into());
        }
        if self.access_key_id.is_some() != has_secret {
            out.push(
                "needs both access_key_id and secret_access_key (or secret_access_key_file)".into(),
            );
        }
        if self.max_requests == Some(0) {
            out.push("max_requests must be at least 1".into());
        }
        out
    }
}

fn read_secret_file(path: &Path) -> Result<String> {
    warn_if_world_readable(path, "S3 secret access key file");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: the S3 secret access key file is empty",
            path.display()
        )));
    }
    Ok(secret)
}

/// Whether a secret file can be read by every user (the "other" read bit). Group access is
/// left alone: a `backup` group sharing the file is a deliberate setup.
fn world_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o004 != 0).then_some(mode)
}

/// A secret that every local user can read is not a secret: say so on every use (as ssh
/// does for keys), but go on, since refusing would break a scheduled backup at night.
fn warn_if_world_readable(path: &Path, what: &str) {
    if let Some(mode) = world_readable(path) {
        tracing::warn!(
            "{what} {} is readable by every user (mode {mode:04o}): chmod o-r it",
            path.display()
        );
    }
}

/// Storage for a repository location: a local directory, or `s3://bucket/prefix`.
pub fn open_storage(location: &str, s3: &S3Settings, create: bool) -> Result<Storage> {
    if location.is_empty() {
        return Err(Error::Invalid(
            "no repository given: use --repo or set HOLDFAST_REPO".into(),
        ));
    }
    if location.starts_with("s3://") {
        let mut opts = S3Options::from_url(location)?;
        opts.endpoint = s3.endpoint.clone();
        opts.region = s3.region.clone();
        opts.virtual_host_style = s3.virtual_host_style;
        opts.max_requests = s3.max_requests.unwrap_or(16);
        opts.max_retries = s3.max_retries.unwrap_or(8);
        opts.credentials = s3.credentials()?;
        if std::env::var_os("AWS_PROFILE").is_none() {
            opts.profile = s3.profile.clone();
        }
        return Storage::s3(&opts);
    }
    if let Some(scheme) = location.split_once("://").map(|(s, _)| s) {
        return Err(Error::Invalid(format!(
            "repository scheme '{scheme}://' is not supported (use a directory or s3://bucket/prefix)"
        )));
    }
    Storage::local(Path::new(location), create)
}

/// Reads the password from `source`; `prompt` asks on the terminal.
pub fn read_password(
    source: &PasswordSource,
    prompt: &dyn Fn(&str) -> std::io::Result<String>,
    what: &str,
) -> Result<Vec<u8>> {
    let pw = match source {
        PasswordSource::File(p) => {
            warn_if_world_readable(p, "password file");
            let s = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            s.lines().next().unwrap_or("").to_string()
        }
        PasswordSource::Value(v) => v.clone(),
        PasswordSource::Command(cmd) => {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| Error::io(PathBuf::from(cmd), e))?;
            if !out.status.success() {
                return Err(Error::Invalid(format!("password command '{cmd}' failed with {}", out.status)));
            }
            String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string()
        }
        PasswordSource::Prompt => prompt(what).map_err(|e| {
            Error::Invalid(format!(
                "no password: set HOLDFAST_PASSWORD_FILE, HOLDFAST_PASSWORD or --password-command ({e})"
            ))
        })?,
    };
    if pw.is_empty() {
        return Err(Error::Invalid("empty password".into()));
    }
    Ok(pw.into_bytes())
}

/// Opens the repository `access` names, with its password.
pub fn open_repository(
    access: &Access,
    prompt: &dyn Fn(&str) -> std::io::Result<String>,
) -> Result<Repository> {
    open_maybe_dry(access, prompt, false)
}

/// The repository as a dry run sees it: reads reach the store, writes (the lock included) stay
/// in memory, packs as their sizes only ([`holdfast_core::storage::DryRun`]), and the local
/// cache is left alone, so that what the run "stored" never looks stored to a later run.
pub fn open_repository_dry_run(
    access: &Access,
    prompt: &dyn Fn(&str) -> std::io::Result<String>,
) -> Result<Repository> {
    open_maybe_dry(access, prompt, true)
}

fn open_maybe_dry(
    access: &Access,
    prompt: &dyn Fn(&str) -> std::io::Result<String>,
    dry_run: bool,
) -> Result<Repository> {
    let mut storage = open_storage(&access.repo, &access.s3, false)?;
    if dry_run {
        storage = storage.decorated(holdfast_core::storage::DryRun::packs_as_sizes);
    }
    // Check the config before asking for a password: a missing repository or a newer format
    // should say so, not prompt.
    holdfast_core::repo::read_config(&storage)?;
    let pw = read_password(
        &access.password,
        prompt,
        &format!("password for {}: ", access.repo),
    )?;
    Repository::open(storage, &pw, access.use_cache && !dry_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_prompt(_: &str) -> std::io::Result<String> {
        Err(std::io::Error::other("no terminal"))
    }

    #[test]
    fn password_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\nignored\n").unwrap();
        assert_eq!(
            read_password(&PasswordSource::File(f), &no_prompt, "").unwrap(),
            b"from-file"
        );
        assert_eq!(
            read_password(&PasswordSource::Command("echo cmd".into()), &no_prompt, "").unwrap(),
            b"cmd"
        );
        assert!(read_password(&PasswordSource::Command("false".into()), &no_prompt, "").is_err());
        assert!(read_password(&PasswordSource::Prompt, &no_prompt, "").is_err());
        assert!(read_password(&PasswordSource::Value(String::new()), &no_prompt, "").is_err());
    }
}
