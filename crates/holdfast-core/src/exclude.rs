//! Which paths a backup leaves out.
//!
//! A pattern without `/` matches an entry's name anywhere (`*.log`, `tmp`); a pattern with `/`
//! matches the whole path, absolute or relative to the backed-up directory (`/srv/dss/data/tmp`,
//! `jobs/*/output`). `**` crosses directories.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
    /// Marker files: a directory containing one is left out (`.nobackup`, `CACHEDIR.TAG`).
    pub if_present: Vec<String>,
}

fn glob(p: &str) -> Result<Glob> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::Invalid(format!("bad exclude pattern '{p}': {e}")))
}

impl Excludes {
    pub fn new(patterns: &[String], if_present: &[String]) -> Result<Excludes> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let (mut nn, mut np) = (0, 0);
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            if p.contains('/') {
                paths.add(glob(p)?);
                np += 1;
            } else {
                names.add(glob(p)?);
                nn += 1;
            }
        }
        let build = |b: GlobSetBuilder, n: usize| -> Result<Option<GlobSet>> {
            if n == 0 {
                return Ok(None);
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::Invalid(e.to_string()))
        };
        Ok(Excludes {
            names: build(names, nn)?,
            paths: build(paths, np)?,
            if_present: if_present.to_vec(),
        })
    }

    /// Reads patterns from a file: one a line, `#` comments and blank lines ignored.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// The patterns given one by one (`--exclude`) followed by those of pattern files
    /// (`--exclude-file`): how every backup assembles them.
    pub fn gather(patterns: &[String], files: &[std::path::PathBuf]) -> Result<Vec<String>> {
        let mut all = patterns.to_vec();
        for f in files {
            all.extend(Self::read_file(f)?);
        }
        Ok(all)
    }

    /// `abs` is the entry's absolute path, `rel` its path below the backed-up root.
    pub fn excluded(&self, abs: &Path, rel: &Path) -> bool {
        if let Some(n) = &self.names {
            if abs.file_name().map(|f| n.is_match(f)).unwrap_or(false) {
                return true;
            }
        }
        if let Some(p) = &self.paths {
            if p.is_match(abs) || p.is_match(rel) {
                return true;
            }
        }
        false
    }

    pub fn has_marker(&self, dir: &Path) -> bool {
        self.if_present
            .iter()
            .any(|m| dir.join(m).symlink_metadata().is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_and_path_patterns() {
        let e = Excludes::new(
            &["*.log".into(), "/srv/d/tmp".into(), "jobs/*/out".into()],
            &[],
        )
        .unwrap();
        assert!(e.excluded(Path::new("/srv/d/a/x.log"), Path::new("a/x.log")));
        assert!(e.excluded(Path::new("/srv/d/tmp"), Path::new("tmp")));
        assert!(!e.excluded(Path::new("/srv/d/tmp2"), Path::new("tmp2")));
        assert!(e.excluded(Path::new("/srv/d/jobs/1/out"), Path::new("jobs/1/out")));
        assert!(!e.excluded(Path::new("/srv/d/jobs/1/2/out"), Path::new("jobs/1/2/out")));
        assert!(Excludes::new(&["[".into()], &[]).is_err());
    }
}
