//! SONiC's `database_global.json`: which `database_config.json` each
//! network namespace of a multi-ASIC switch uses, read as swss-common's
//! `SonicDBConfig::initializeGlobalConfig` reads it.
//!
//! Format (`dockers/docker-database/database_global.json.j2`):
//!
//! ```text
//! { "INCLUDES": [
//!     { "include": "../../redis/sonic-db/database_config.json" },
//!     { "namespace": "asic0", "include": "../../redis0/sonic-db/database_config.json" },
//!     { "container_name": "dpu0", "include": "../../redisdpu0/sonic-db/database_config.json" } ],
//!   "VERSION": "1.0" }
//! ```
//!
//! A missing or empty `namespace` is the host's; an entry with a
//! `container_name` (a smart switch's DPU) belongs to that container, not
//! to a namespace. Other keys are ignored, as swss-common ignores them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading `database_global.json`; each names the file.
#[derive(Debug)]
pub enum GlobalConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not JSON of the expected shape (an `INCLUDES` list of objects, each
    /// with an `include` string).
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// An entry whose `include` is empty.
    EmptyInclude { path: PathBuf, index: usize },
    /// No entry for the namespace asked for.
    UnknownNamespace {
        path: PathBuf,
        namespace: String,
        /// The namespaces the file does list, in its order.
        known: Vec<String>,
    },
}

impl fmt::Display for GlobalConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobalConfigError::Read { path, source } => write!(
                f,
                "cannot read database global config {}: {source}",
                path.display()
            ),
            GlobalConfigError::Parse { path, source } => write!(
                f,
                "database global config {} is malformed: {source}",
                path.display()
            ),
            GlobalConfigError::EmptyInclude { path, index } => write!(
                f,
                "database global config {}: INCLUDES[{index}] has an empty \"include\"",
                path.display()
            ),
            GlobalConfigError::UnknownNamespace {
                path,
                namespace,
                known,
            } => {
                let known: Vec<String> = known
                    .iter()
                    .map(|n| {
                        if n.is_empty() {
                            "\"\" (the host)".to_string()
                        } else {
                            n.clone()
                        }
                    })
                    .collect();
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                write!(
                    f,
                    "namespace {namespace:?} is not in database global config {} \
                     (namespaces there: {known})",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for GlobalConfigError {}

#[derive(Debug, Deserialize)]
struct RawInclude {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    container_name: String,
    include: String,
}

#[derive(Debug, Deserialize)]
struct RawGlobal {
    #[serde(rename = "INCLUDES")]
    includes: Vec<RawInclude>,
}

/// One `INCLUDES` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// `""` for the host.
    pub namespace: String,
    /// `""` unless the entry is a container's (a DPU's).
    pub container_name: String,
    /// The entry's `database_config.json`, resolved as swss-common does.
    pub database_config: PathBuf,
}

/// A parsed `database_global.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// The file itself, named in errors.
    pub path: PathBuf,
    /// Its entries, in the file's order.
    pub includes: Vec<Include>,
}

impl GlobalConfig {
    /// Read and parse the file at `path`.
    pub fn load(path: &Path) -> Result<GlobalConfig, GlobalConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| GlobalConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        GlobalConfig::parse(path, &text)
    }

    /// Parse the file's text; `path` names it in errors and is where the
    /// includes are resolved from.
    pub fn parse(path: &Path, text: &str) -> Result<GlobalConfig, GlobalConfigError> {
        let raw: RawGlobal =
            serde_json::from_str(text).map_err(|source| GlobalConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let includes = raw
            .includes
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                if r.include.is_empty() {
                    return Err(GlobalConfigError::EmptyInclude {
                        path: path.to_path_buf(),
                        index,
                    });
                }
                Ok(Include {
                    namespace: r.namespace,
                    container_name: r.container_name,
                    database_config: resolve(path, &r.include),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GlobalConfig {
            path: path.to_path_buf(),
            includes,
        })
    }

    /// The namespaces listed (`""` is the host), in the file's order, each
    /// once; containers' entries are not namespaces.
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for i in self.includes.iter().filter(|i| i.container_name.is_empty()) {
            if !out.contains(&i.namespace) {
                out.push(i.namespace.clone());
            }
        }
        out
    }

    /// The `database_config.json` of `namespace`. When the file lists a
    /// namespace twice the last entry wins, as in swss-common (whose map
    /// the later entry overwrites).
    pub fn database_config(&self, namespace: &str) -> Result<&Path, GlobalConfigError> {
        self.includes
            .iter()
            .rev()
            .find(|i| i.container_name.is_empty() && i.namespace == namespace)
            .map(|i| i.database_config.as_path())
            .ok_or_else(|| GlobalConfigError::UnknownNamespace {
                path: self.path.clone(),
                namespace: namespace.to_string(),
                known: self.namespaces(),
            })
    }
}

/// `include` as swss-common resolves it: appended as text to the global
/// file's directory up to and including its last `/` (nothing when the
/// path has none). An absolute `include` therefore still lands under that
/// directory (`dir//etc/x.json` is `dir/etc/x.json`), as it does for
/// every other SONiC tool reading the same file.
fn resolve(global: &Path, include: &str) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let global = global.as_os_str().as_bytes();
    let dir = match global.iter().rposition(|&b| b == b'/') {
        Some(slash) => &global[..=slash],
        None => &[][..],
    };
    let mut joined = dir.to_vec();
    joined.extend_from_slice(include.as_bytes());
    PathBuf::from(std::ffi::OsString::from_vec(joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SONIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/database_global.json"
    ));

    const AT: &str = "/var/run/redis/sonic-db/database_global.json";

    #[test]
    fn reads_sonics_file() {
        let g = GlobalConfig::parse(Path::new(AT), SONIC).unwrap();
        assert_eq!(g.namespaces(), ["", "asic0", "asic1"]);
        // Resolved against the global file's directory, as text.
        assert_eq!(
            g.database_config("asic1").unwrap(),
            Path::new("/var/run/redis/sonic-db/../../redis1/sonic-db/database_config.json")
        );
        assert_eq!(
            g.database_config("").unwrap(),
            Path::new("/var/run/redis/sonic-db/../../redis/sonic-db/database_config.json")
        );
        // The DPU's entry is a container's, not a namespace.
        assert!(g.database_config("dpu0").is_err());
        assert_eq!(g.includes[3].container_name, "dpu0");
    }

    #[test]
    fn includes_resolve_like_swss_common() {
        assert_eq!(
            resolve(Path::new("/a/b/g.json"), "../c/d.json"),
            Path::new("/a/b/../c/d.json")
        );
        assert_eq!(resolve(Path::new("g.json"), "d.json"), Path::new("d.json"));
        // Plain concatenation: an absolute include stays under the directory.
        assert_eq!(
            resolve(Path::new("/a/g.json"), "/etc/d.json").as_os_str(),
            "/a//etc/d.json"
        );
    }

    #[test]
    fn a_namespace_listed_twice_is_its_last_entry() {
        let text = r#"{"INCLUDES": [
            {"namespace": "asic0", "include": "first.json"},
            {"namespace": "asic0", "include": "second.json"}]}"#;
        let g = GlobalConfig::parse(Path::new("/d/g.json"), text).unwrap();
        assert_eq!(
            g.database_config("asic0").unwrap(),
            Path::new("/d/second.json")
        );
        assert_eq!(g.namespaces(), ["asic0"]);
    }

    #[test]
    fn an_unknown_namespace_lists_the_known_ones() {
        let g = GlobalConfig::parse(Path::new(AT), SONIC).unwrap();
        let e = g.database_config("asic7").unwrap_err().to_string();
        assert!(e.contains("\"asic7\""), "{e}");
        assert!(e.contains(AT), "{e}");
        assert!(
            e.contains("namespaces there: \"\" (the host), asic0, asic1)"),
            "{e}"
        );
        let empty = GlobalConfig::parse(Path::new(AT), r#"{"INCLUDES": []}"#).unwrap();
        let e = empty.database_config("asic0").unwrap_err().to_string();
        assert!(e.contains("namespaces there: none"), "{e}");
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let p = Path::new("/etc/g.json");
        for (text, want) in [
            ("{not json", "malformed"),
            ("{}", "INCLUDES"),
            (r#"{"INCLUDES": {}}"#, "malformed"),
            (r#"{"INCLUDES": [{"namespace": "asic0"}]}"#, "include"),
            (
                r#"{"INCLUDES": [{"namespace": 0, "include": "x"}]}"#,
                "malformed",
            ),
            (r#"{"INCLUDES": [{"include": 5}]}"#, "malformed"),
            (
                r#"{"INCLUDES": [{"include": "a"}, {"namespace": "asic0", "include": ""}]}"#,
                "INCLUDES[1] has an empty \"include\"",
            ),
        ] {
            let e = GlobalConfig::parse(p, text).unwrap_err().to_string();
            assert!(e.contains("/etc/g.json") && e.contains(want), "{text}: {e}");
        }
        let e = GlobalConfig::load(Path::new("/nonexistent/g.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read database global config /nonexistent/g.json"),
            "{e}"
        );
    }
}
