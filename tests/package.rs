//! The Debian package `make deb` builds (tools/test-all runs it before the
//! tests), unpacked with `dpkg-deb` and looked at with the tools an
//! operator and Debian use: its binaries run, each unit's `ExecStart=`
//! names a binary the package ships, `man -l` renders every page, lintian
//! finds no error. And the man pages in the tree: complete against
//! `--help`, and clean under groff and mandoc.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testbed::TempDir;

/// The Debian package's name (Cargo.toml `[package.metadata.deb] name`).
const PACKAGE: &str = "sonic-syncd";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// stdout and stderr of a finished command, for asserts and messages.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A tool the test needs, or a failure saying how to get it.
fn tool(name: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} not found: apt-get install {package} (tools/install-deps does)"
    );
    Command::new(name)
}

/// `cmd`, which must succeed; its output.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

/// The daemons: the crate's binaries, `src/bin/<daemon>.rs`.
fn daemons() -> BTreeSet<String> {
    std::fs::read_dir(repo().join("src/bin"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------
// The man pages in the tree
// ---------------------------------------------------------------------

/// Every warning groff and mandoc have about the page at `path`.
fn lint_man_page(path: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let out = tool("groff", "groff-base")
        .args(["-ww", "-z", "-man"])
        .arg(path)
        .output()
        .unwrap();
    if !out.status.success() || !text(&out).is_empty() {
        problems.push(format!("groff -ww -z -man: {}", text(&out)));
    }
    let out = tool("mandoc", "mandoc")
        .args(["-Tlint", "-Wall"])
        .arg(path)
        .output()
        .unwrap();
    if !out.status.success() || !text(&out).is_empty() {
        problems.push(format!("mandoc -Tlint -Wall: {}", text(&out)));
    }
    problems
}

/// `man -l path` as a reader sees it, failing on any warning.
fn render_man_page(path: &Path) -> String {
    let out = tool("man", "man-db")
        .args(["--warnings", "-l"])
        .arg(path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "man -l {}: {}",
        path.display(),
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty(),
        "man -l {} warns:\n{stderr}",
        path.display()
    );
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains("NAME"), "man -l {}:\n{page}", path.display());
    page
}

#[test]
fn every_man_page_renders_without_a_warning() {
    let pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs/man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!pages.is_empty());
    for page in pages {
        let problems = lint_man_page(&page);
        assert!(problems.is_empty(), "{}: {problems:#?}", page.display());
        render_man_page(&page);
    }
}

/// What `make deb` ships for a daemon without a hand-written page.
#[test]
fn a_man_page_made_from_help_renders_without_a_warning() {
    let dir = TempDir::new().unwrap();
    let page = dir.path().join("portsyncd.8");
    let out = run(Command::new(repo().join("tools/man-from-help"))
        .arg("portsyncd")
        .arg(env!("CARGO_BIN_EXE_portsyncd")));
    std::fs::write(&page, &out.stdout).unwrap();
    let problems = lint_man_page(&page);
    assert!(problems.is_empty(), "{problems:#?}");
    let shown = render_man_page(&page);
    assert!(
        shown.contains("portsyncd - SONiC port state sync daemon"),
        "{shown}"
    );
    assert!(shown.contains("sysctl-check"), "{shown}");
}

/// The binary of daemon `name`, built with these tests.
fn binary(name: &str) -> &'static str {
    match name {
        "portsyncd" => env!("CARGO_BIN_EXE_portsyncd"),
        "neighsyncd" => env!("CARGO_BIN_EXE_neighsyncd"),
        other => panic!("add {other} to binary()"),
    }
}

/// Every daemon's hand-written page describes every key and command its
/// `--help` does. (A daemon without a page of its own gets one made from
/// its --help by `make deb`; `every_shipped_man_page_renders` checks it is
/// there.)
#[test]
fn the_man_page_names_every_key_and_command_of_help() {
    let mut checked = Vec::new();
    for daemon in daemons() {
        let path = repo().join(format!("docs/man/{daemon}.8"));
        let Ok(page) = std::fs::read_to_string(&path) else {
            continue;
        };
        // Its configuration as the binary prints it, unset options given a
        // value so that they are listed.
        let out = run(Command::new(binary(&daemon)).args([
            "--config",
            "/dev/null",
            "--set",
            "runtime.cpu=0",
            "--set",
            "metrics.cpu=0",
            "--set",
            "runtime.sched=other",
            "--print-config",
        ]));
        let table: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
        for (section, keys) in table {
            let heading = format!(".SS [{section}]");
            let start = page
                .find(&heading)
                .unwrap_or_else(|| panic!("no `{heading}` in {daemon}.8"));
            let body = &page[start + heading.len()..];
            let body = &body[..body.find("\n.S").unwrap_or(body.len())];
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    body.lines()
                        .any(|l| l.split_whitespace().take(2).eq([".B", key.as_str()])),
                    "{daemon}.8 does not describe {section}.{key}"
                );
            }
        }
        let help =
            String::from_utf8(run(Command::new(binary(&daemon)).arg("--help")).stdout).unwrap();
        let env = format!("{}_", daemon.to_uppercase());
        assert!(help.contains(&env), "{daemon} --help: {env}");
        for item in [
            "check",
            "sysctl\\-check",
            "\\-\\-json",
            "\\-\\-print\\-config",
            "\\-\\-config",
            "\\-\\-set",
            "\\-\\-namespace",
            "\\-\\-version",
            "SIGHUP",
            &env,
        ] {
            assert!(page.contains(item), "{daemon}.8 does not mention {item}");
        }
        assert!(
            page.contains(&format!(".SH NAME\n{daemon} \\- ")),
            "{daemon}.8: NAME"
        );
        checked.push(daemon);
    }
    assert_eq!(checked, ["neighsyncd", "portsyncd"]);
}

// ---------------------------------------------------------------------
// The package
// ---------------------------------------------------------------------

/// The .deb `make deb` left in target/debian for this version (or the one
/// `TEST_DEB` names), with its version.
fn package() -> (PathBuf, String) {
    let path = match std::env::var_os("TEST_DEB") {
        Some(p) => PathBuf::from(p),
        None => {
            let dir = repo().join("target/debian");
            let prefix = format!("{PACKAGE}_{}-", env!("CARGO_PKG_VERSION"));
            let found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy();
                    name.starts_with(&prefix) && name.ends_with(".deb")
                })
                .collect();
            assert!(
                found.len() == 1,
                "want one {prefix}*.deb in {}, found {found:?}: run `make deb` first \
                 (tools/test-all does)",
                dir.display()
            );
            found.into_iter().next().unwrap()
        }
    };
    let out = run(tool("dpkg-deb", "dpkg")
        .args(["--field"])
        .arg(&path)
        .args(["Package", "Version"]));
    let fields = String::from_utf8(out.stdout).unwrap();
    assert!(
        fields.contains(&format!("Package: {PACKAGE}\n")),
        "{}: {fields}",
        path.display()
    );
    let version = fields
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_string();
    (path, version)
}

/// A package unpacked into a temporary directory, data and control.
struct Unpacked {
    dir: TempDir,
    /// The package's version, e.g. 0.1.0-1.
    version: String,
}

impl Unpacked {
    fn new() -> Unpacked {
        let (deb, version) = package();
        let dir = TempDir::new().unwrap();
        run(tool("dpkg-deb", "dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(dir.path().join("root")));
        run(tool("dpkg-deb", "dpkg")
            .arg("-e")
            .arg(&deb)
            .arg(dir.path().join("DEBIAN")));
        Unpacked { dir, version }
    }

    /// A path of the installed tree, e.g. `usr/bin/portsyncd`.
    fn path(&self, installed: &str) -> PathBuf {
        self.dir
            .path()
            .join("root")
            .join(installed.trim_start_matches('/'))
    }

    fn control(&self, file: &str) -> String {
        read(self.dir.path().join("DEBIAN").join(file))
    }

    /// The upstream part of the version: what `--version` prints.
    fn upstream_version(&self) -> &str {
        self.version
            .rsplit_once('-')
            .map_or(&self.version, |(v, _)| v)
    }

    /// Every file in `dir` of the installed tree, by name.
    fn files_in(&self, dir: &str) -> BTreeSet<String> {
        std::fs::read_dir(self.path(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }
}

#[test]
fn the_package_is_this_version_and_its_binaries_say_so() {
    let p = Unpacked::new();
    assert_eq!(p.upstream_version(), env!("CARGO_PKG_VERSION"));
    let mut want: BTreeSet<String> = daemons();
    want.insert("portsyncd-flood".into());
    assert_eq!(p.files_in("usr/bin"), want);
    for d in daemons() {
        let out = run(Command::new(p.path(&format!("usr/bin/{d}"))).arg("--version"));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{d} {}\n", p.upstream_version())
        );
    }
    let out = run(Command::new(p.path("usr/bin/portsyncd-flood")).arg("--version"));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("flood {}\n", p.upstream_version())
    );
    // The changelog's latest entry is this version.
    let changelog = read(repo().join("packaging/debian/changelog"));
    assert!(
        changelog.starts_with(&format!("{PACKAGE} ({}) ", p.version)),
        "packaging/debian/changelog needs an entry for {}",
        p.version
    );
    assert!(p
        .path(&format!("usr/share/doc/{PACKAGE}/changelog.Debian.gz"))
        .is_file());
}

/// The installed unit is the tree's with ExecStart= at /usr/bin (the
/// rewrite `make install` does for its prefix), and that binary is in the
/// package.
#[test]
fn each_units_exec_start_is_a_binary_the_package_ships() {
    let p = Unpacked::new();
    let units = p.files_in("usr/lib/systemd/system");
    let want: BTreeSet<String> = daemons().iter().map(|d| format!("{d}.service")).collect();
    assert_eq!(units, want);
    for d in daemons() {
        let unit = read(p.path(&format!("usr/lib/systemd/system/{d}.service")));
        let exec: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix("ExecStart="))
            .collect();
        assert_eq!(exec.len(), 1, "{d}.service: {exec:?}");
        let program = exec[0].split_whitespace().next().unwrap();
        assert_eq!(program, format!("/usr/bin/{d}"));
        let shipped = p.path(program);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&shipped)
            .unwrap_or_else(|e| panic!("{d}.service: ExecStart={program}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{program}");
        // Nothing else differs from the tree's unit.
        let tree = read(repo().join(format!("systemd/{d}.service")));
        let other = |u: &str| -> Vec<String> {
            u.lines()
                .filter(|l| !l.starts_with("ExecStart="))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(other(&unit), other(&tree), "{d}.service");
    }
}

/// Installing neither enables nor starts a daemon (on a host that is not a
/// switch it would bring every Ethernet* netdev down); an upgrade restarts
/// it only if it runs, removing stops it.
#[test]
fn installing_the_package_neither_enables_nor_starts_a_daemon() {
    let p = Unpacked::new();
    let postinst = p.control("postinst");
    assert!(postinst.contains("was-enabled"), "{postinst}");
    assert!(postinst.contains("try-restart"), "{postinst}");
    for forbidden in [
        "deb-systemd-invoke start",
        "systemctl start",
        "enable --now",
    ] {
        assert!(
            !postinst.contains(forbidden),
            "postinst: {forbidden}\n{postinst}"
        );
    }
    for d in daemons() {
        assert!(postinst.contains(&format!("{d}.service")), "{postinst}");
    }
    let prerm = p.control("prerm");
    assert!(prerm.contains("stop"), "{prerm}");
    // /etc files are conffiles: an operator's edits survive upgrades.
    let conffiles: BTreeSet<String> = p.control("conffiles").lines().map(str::to_string).collect();
    let mut want = vec![(
        "/etc/sysctl.d/99-portsyncd.conf".to_string(),
        "sysctl/99-portsyncd.conf".to_string(),
    )];
    for d in daemons() {
        want.push((
            format!("/etc/sonic/{d}.conf.example"),
            format!("config/{d}.conf.example"),
        ));
    }
    assert!(want
        .iter()
        .any(|(f, _)| f == "/etc/sonic/neighsyncd.conf.example"));
    for (f, tree) in want {
        assert!(conffiles.contains(&f), "{f} not a conffile: {conffiles:?}");
        assert_eq!(read(p.path(&f)), read(repo().join(tree)), "{f}");
    }
    let copyright = read(p.path(&format!("usr/share/doc/{PACKAGE}/copyright")));
    assert!(copyright.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
}

#[test]
fn every_shipped_man_page_renders() {
    let p = Unpacked::new();
    let pages = p.files_in("usr/share/man/man8");
    let mut want: BTreeSet<String> = daemons().iter().map(|d| format!("{d}.8.gz")).collect();
    want.insert("portsyncd-flood.8.gz".into());
    assert_eq!(pages, want);
    for page in pages {
        let shown = render_man_page(&p.path(&format!("usr/share/man/man8/{page}")));
        let name = page.trim_end_matches(".8.gz");
        assert!(shown.contains(&format!("{name} - ")), "{page}:\n{shown}");
    }
}

#[test]
fn lintian_finds_no_error() {
    let (deb, _) = package();
    let out = tool("lintian", "lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .unwrap();
    let report = text(&out);
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian {}:\n{report}", deb.display());
    // Exit 2 is lintian failing to run; 1 means errors, caught above.
    assert_ne!(out.status.code(), Some(2), "lintian failed:\n{report}");
    // Warnings are shown, not fatal: `cargo test -- --nocapture` prints them.
    println!("lintian {}:\n{report}", deb.display());
}
