//! Which database Draco runs on: `database_url` (or `DRACO_DATABASE_URL`),
//! an SQLite file by default or a PostgreSQL database. The URL never holds
//! the password (it is printed by `draco config check` and in errors): that
//! comes from `DRACO_DATABASE_PASSWORD` or the file `database_password_file`
//! names.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// The file name of the embedded database inside the data directory.
pub const DATABASE_FILE: &str = "draco.db";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    #[error(
        "database_url must start with sqlite:// or postgres:// (postgresql:// too); it starts with `{scheme}`"
    )]
    Scheme { scheme: String },
    #[error(
        "database_url holds a password; give it in DRACO_DATABASE_PASSWORD or the file `database_password_file` names instead"
    )]
    Password,
    #[error("database_url is not a valid URL: {0}")]
    Invalid(String),
    #[error("database_url: {0}")]
    Sqlite(String),
}

/// A PostgreSQL connection URL without its password, and the password apart.
#[derive(Clone)]
pub struct PostgresUrl {
    url: url::Url,
    password: Option<SecretString>,
}

impl PostgresUrl {
    /// The URL without the password: safe to print.
    pub fn display(&self) -> String {
        self.url.to_string()
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        Self {
            url,
            password: self.password.clone(),
        }
    }

    /// sqlx's options for this URL, with the password set apart from it.
    /// Errors: the URL has an option sqlx does not take (the message names
    /// it, never the password).
    pub(crate) fn connect_options(&self) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
        use secrecy::ExposeSecret;
        use std::str::FromStr;
        let mut options = sqlx::postgres::PgConnectOptions::from_str(self.url.as_str())?;
        if let Some(password) = &self.password {
            options = options.password(password.expose_secret());
        }
        Ok(options.application_name("draco"))
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &self.display())
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum DatabaseLocation {
    /// An SQLite file (created if absent).
    Sqlite(PathBuf),
    /// A PostgreSQL database (it must exist; Draco creates its tables).
    Postgres(PostgresUrl),
}

impl DatabaseLocation {
    /// Checks a `database_url` without resolving it: the scheme is known,
    /// the URL parses, and it holds no password. Errors: [`LocationError`].
    pub fn check(database_url: &str) -> Result<(), LocationError> {
        Self::resolve(Some(database_url), None, Path::new(".")).map(|_| ())
    }

    /// The location `database_url` names, or the SQLite file
    /// [`DATABASE_FILE`] in `data_dir` when it is unset. A relative SQLite
    /// path (`sqlite://state/draco.db`) is taken from `data_dir`; an
    /// absolute one is written `sqlite:///var/lib/draco/draco.db`.
    /// Errors: [`LocationError`] (the message never repeats the URL, which
    /// may hold a user name).
    pub fn resolve(
        database_url: Option<&str>,
        password: Option<SecretString>,
        data_dir: &Path,
    ) -> Result<Self, LocationError> {
        let Some(raw) = database_url.filter(|u| !u.trim().is_empty()) else {
            return Ok(Self::Sqlite(data_dir.join(DATABASE_FILE)));
        };
        let raw = raw.trim();
        let scheme = raw
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => {
                let rest = raw["sqlite:".len()..].trim_start_matches("//");
                if rest.is_empty() || rest.starts_with(":memory:") {
                    return Err(LocationError::Sqlite(
                        "name a file (sqlite://draco.db, sqlite:///var/lib/draco/draco.db): Draco's state must outlive the process".into(),
                    ));
                }
                if rest.contains('?') {
                    return Err(LocationError::Sqlite(
                        "SQLite options are Draco's to set (WAL, full sync): drop the ?query"
                            .into(),
                    ));
                }
                let path = Path::new(rest);
                Ok(Self::Sqlite(if path.is_absolute() {
                    path.to_owned()
                } else {
                    data_dir.join(path)
                }))
            }
            "postgres" | "postgresql" => {
                let mut url =
                    url::Url::parse(raw).map_err(|e| LocationError::Invalid(e.to_string()))?;
                let in_query = url
                    .query_pairs()
                    .any(|(k, _)| k.eq_ignore_ascii_case("password"));
                if url.password().is_some() || in_query {
                    return Err(LocationError::Password);
                }
                // Already without a password; kept explicit for the display.
                let _ = url.set_password(None);
                Ok(Self::Postgres(PostgresUrl { url, password }))
            }
            _ => Err(LocationError::Scheme {
                scheme: scheme.chars().take(20).collect(),
            }),
        }
    }

    /// What to print: the SQLite path, or the PostgreSQL URL without password.
    pub fn display(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => url.display(),
        }
    }

    /// Several replicas can share it (PostgreSQL; an SQLite file is one host's).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_means_the_sqlite_file_in_the_data_dir() {
        let dir = Path::new("/var/lib/draco");
        match DatabaseLocation::resolve(None, None, dir).expect("default") {
            DatabaseLocation::Sqlite(path) => assert_eq!(path, dir.join("draco.db")),
            other => panic!("{other:?}"),
        }
        match DatabaseLocation::resolve(Some("sqlite://state/x.db"), None, dir).expect("relative") {
            DatabaseLocation::Sqlite(path) => assert_eq!(path, dir.join("state/x.db")),
            other => panic!("{other:?}"),
        }
        match DatabaseLocation::resolve(Some("sqlite:///srv/d.db"), None, dir).expect("absolute") {
            DatabaseLocation::Sqlite(path) => assert_eq!(path, Path::new("/srv/d.db")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        for url in [
            "postgres://draco:hunter2@db:5432/draco",
            "postgresql://draco@db/draco?password=hunter2",
        ] {
            let error = DatabaseLocation::check(url).expect_err("refused");
            assert_eq!(error, LocationError::Password);
            assert!(!error.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn postgres_urls_keep_their_options_and_take_the_password_apart() {
        let location = DatabaseLocation::resolve(
            Some("postgres://draco@db.internal:5433/draco?sslmode=require"),
            Some(SecretString::from("s3cret")),
            Path::new("."),
        )
        .expect("valid");
        assert!(location.is_shared());
        let shown = location.display();
        assert_eq!(
            shown,
            "postgres://draco@db.internal:5433/draco?sslmode=require"
        );
        assert!(!format!("{location:?}").contains("s3cret"));
    }

    #[test]
    fn other_schemes_and_memory_databases_are_refused() {
        assert!(matches!(
            DatabaseLocation::check("mysql://db/draco"),
            Err(LocationError::Scheme { .. })
        ));
        assert!(matches!(
            DatabaseLocation::check("sqlite::memory:"),
            Err(LocationError::Sqlite(_))
        ));
        assert!(matches!(
            DatabaseLocation::check("sqlite://x.db?mode=ro"),
            Err(LocationError::Sqlite(_))
        ));
    }
}
