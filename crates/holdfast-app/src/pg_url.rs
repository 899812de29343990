//! PostgreSQL connection URLs as the configuration gives them, refused when they carry a
//! password (it would show on command lines and in process listings).

/// A connection URL without a password: `postgresql://user@host:port/dbname?params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgUrl {
    prefix: String,
    pub dbname: String,
    query: String,
}

impl PgUrl {
    pub fn parse(url: &str) -> std::result::Result<PgUrl, String> {
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| "expected postgresql://user@host:port/dbname".to_string())?;
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, format!("?{q}")),
            None => (rest, String::new()),
        };
        let (authority, db) = main.split_once('/').ok_or_else(|| {
            "no database name: expected postgresql://user@host:port/dbname".to_string()
        })?;
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Err("the URL carries a password: put it in a PGPASSFILE (postgres.passfile) instead, so it never appears on a command line".into());
            }
        }
        if query.contains("password=") {
            return Err("the URL carries a password parameter: use a PGPASSFILE instead".into());
        }
        if db.is_empty() {
            return Err("no database name: expected postgresql://user@host:port/dbname".into());
        }
        Ok(PgUrl {
            prefix: format!("postgresql://{authority}/"),
            dbname: db.to_string(),
            query,
        })
    }

    /// The same server, another database.
    pub fn with_db(&self, db: &str) -> PgUrl {
        PgUrl {
            dbname: db.to_string(),
            ..self.clone()
        }
    }

    /// Host and port only, for reports.
    pub fn server(&self) -> String {
        let a = self
            .prefix
            .trim_start_matches("postgresql://")
            .trim_end_matches('/');
        a.rsplit_once('@').map(|(_, h)| h).unwrap_or(a).to_string()
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.prefix, self.dbname, self.query)
    }
}
