//! SONiC's `database_config.json`: where each database lives.
//!
//! Format (see `shared/sonic/database_config.json`): `INSTANCES` maps an
//! instance name to `hostname`, `port` and `unix_socket_path`; `DATABASES`
//! maps a database name to its `id`, key `separator` and `instance`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading `database_config.json`; each names the file.
#[derive(Debug)]
pub enum DbConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A database portsyncd needs is not listed.
    MissingDatabase { path: PathBuf, name: String },
    /// A database names an instance that is not listed.
    MissingInstance {
        path: PathBuf,
        database: String,
        instance: String,
    },
    /// A separator that is not exactly one character.
    BadSeparator {
        path: PathBuf,
        database: String,
        separator: String,
    },
}

impl fmt::Display for DbConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbConfigError::Read { path, source } => {
                write!(f, "cannot read database config {}: {source}", path.display())
            }
            DbConfigError::Parse { path, source } => {
                write!(f, "database config {} is malformed: {source}", path.display())
            }
            DbConfigError::MissingDatabase { path, name } => {
                write!(f, "database config {} has no database {name}", path.display())
            }
            DbConfigError::MissingInstance { path, database, instance } => write!(
                f,
                "database config {}: database {database} uses instance {instance}, which is not in INSTANCES",
                path.display()
            ),
            DbConfigError::BadSeparator { path, database, separator } => write!(
                f,
                "database config {}: database {database} has separator {separator:?}, expected one character",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DbConfigError {}

#[derive(Debug, Deserialize)]
struct RawInstance {
    hostname: String,
    port: u16,
    #[serde(default)]
    unix_socket_path: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawDatabase {
    id: u32,
    separator: String,
    instance: String,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(rename = "INSTANCES")]
    instances: HashMap<String, RawInstance>,
    #[serde(rename = "DATABASES")]
    databases: HashMap<String, RawDatabase>,
}

/// Where a Redis instance listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Used when the socket file exists at connect time.
    pub unix_socket_path: Option<PathBuf>,
    pub hostname: String,
    pub port: u16,
}

/// Concrete address chosen for one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String, u16),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

impl Instance {
    /// SONiC's choice: the unix socket when it exists, else TCP.
    pub fn address(&self) -> Address {
        match &self.unix_socket_path {
            Some(path) if path.exists() => Address::Unix(path.clone()),
            _ => Address::Tcp(self.hostname.clone(), self.port),
        }
    }
}

/// One database: its instance, number and key separator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: &'static str,
    pub instance: Instance,
    pub id: u32,
    pub separator: u8,
}

/// The databases portsyncd uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Databases {
    pub appl: Database,
    pub config: Database,
    pub state: Database,
}

impl Databases {
    /// Read and check `database_config.json`.
    pub fn load(path: &Path) -> Result<Databases, DbConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| DbConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Databases::parse(path, &text)
    }

    /// Parse the file's text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Databases, DbConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| DbConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let db = |name: &'static str| -> Result<Database, DbConfigError> {
            let d = raw
                .databases
                .get(name)
                .ok_or_else(|| DbConfigError::MissingDatabase {
                    path: path.to_path_buf(),
                    name: name.to_string(),
                })?;
            let inst =
                raw.instances
                    .get(&d.instance)
                    .ok_or_else(|| DbConfigError::MissingInstance {
                        path: path.to_path_buf(),
                        database: name.to_string(),
                        instance: d.instance.clone(),
                    })?;
            let separator = match d.separator.as_bytes() {
                [b] => *b,
                _ => {
                    return Err(DbConfigError::BadSeparator {
                        path: path.to_path_buf(),
                        database: name.to_string(),
                        separator: d.separator.clone(),
                    })
                }
            };
            Ok(Database {
                name,
                instance: Instance {
                    unix_socket_path: inst
                        .unix_socket_path
                        .as_deref()
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from),
                    hostname: inst.hostname.clone(),
                    port: inst.port,
                },
                id: d.id,
                separator,
            })
        };
        Ok(Databases {
            appl: db("APPL_DB")?,
            config: db("CONFIG_DB")?,
            state: db("STATE_DB")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SONIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/database_config.json"
    ));

    #[test]
    fn reads_sonics_file() {
        let dbs = Databases::parse(Path::new("x.json"), SONIC).unwrap();
        assert_eq!(dbs.appl.id, 0);
        assert_eq!(dbs.appl.separator, b':');
        assert_eq!(dbs.config.id, 4);
        assert_eq!(dbs.config.separator, b'|');
        assert_eq!(dbs.state.id, 6);
        assert_eq!(dbs.state.separator, b'|');
        assert_eq!(dbs.state.instance.hostname, "127.0.0.1");
        assert_eq!(dbs.state.instance.port, 6379);
        assert_eq!(
            dbs.state.instance.unix_socket_path.as_deref(),
            Some(Path::new("/var/run/redis/redis.sock"))
        );
    }

    #[test]
    fn absent_unix_socket_falls_back_to_tcp() {
        let inst = Instance {
            unix_socket_path: Some("/nonexistent/redis.sock".into()),
            hostname: "127.0.0.1".into(),
            port: 6379,
        };
        assert_eq!(inst.address(), Address::Tcp("127.0.0.1".into(), 6379));
        let dir = std::env::temp_dir();
        let inst = Instance {
            unix_socket_path: Some(dir.clone()),
            ..inst
        };
        assert_eq!(inst.address(), Address::Unix(dir));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let p = Path::new("/etc/db.json");
        let e = Databases::parse(p, "{not json").unwrap_err().to_string();
        assert!(e.contains("/etc/db.json") && e.contains("malformed"), "{e}");
        let e = Databases::parse(p, r#"{"INSTANCES":{},"DATABASES":{}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("APPL_DB"), "{e}");
        let text =
            r#"{"INSTANCES":{},"DATABASES":{"APPL_DB":{"id":0,"separator":":","instance":"r"}}}"#;
        let e = Databases::parse(p, text).unwrap_err().to_string();
        assert!(e.contains("instance r"), "{e}");
        let text = r#"{"INSTANCES":{"r":{"hostname":"h","port":1}},
            "DATABASES":{"APPL_DB":{"id":0,"separator":"::","instance":"r"}}}"#;
        let e = Databases::parse(p, text).unwrap_err().to_string();
        assert!(e.contains("separator"), "{e}");
        let text = r#"{"INSTANCES":{"r":{"hostname":"h","port":"x"}},"DATABASES":{}}"#;
        let e = Databases::parse(p, text).unwrap_err().to_string();
        assert!(e.contains("malformed"), "{e}");
    }
}
