//! The Dockerfile's `build` stage, run as a builder would run it, for both architectures
//! the image is built for.
//!
//! There is no container engine here, so the stage is interpreted: a copy of the build
//! context holding only what `.dockerignore` admits, then the stage's `ARG`, `ENV`,
//! `WORKDIR`, `COPY` and `RUN` instructions in order, each `RUN` through `sh -c` in the
//! work directory, `TARGETARCH` set as BuildKit sets it from `--platform`. The one step that
//! is not run is the toolchain's (`apt-get install`, `rustup target add`), which would change
//! the host: instead its pinned packages must be installed at exactly those versions and its
//! targets added (`.ci/run` does both), so a pin that no longer exists fails here too.
//!
//! The binary it leaves in `out/` must be a static ELF for the architecture, and must serve
//! `/metrics`: natively for amd64, under `qemu-aarch64` (Debian's qemu-user) for arm64.
//!
//! Release builds are slow (minutes per architecture, cold): cargo's output goes to
//! `$TMPDIR/poolwatch-builder-target`, kept between runs, so a rerun rebuilds only the crate.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One instruction of a Dockerfile, continuation lines joined, comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    out
}

/// The instructions of the stage named `name` (`FROM ... AS name`), without the FROM.
fn stage<'a>(all: &'a [Instruction], name: &str) -> &'a [Instruction] {
    let start = all
        .iter()
        .position(|i| {
            i.keyword == "FROM"
                && i.args
                    .to_ascii_lowercase()
                    .ends_with(&format!(" as {name}"))
        })
        .unwrap_or_else(|| panic!("no stage {name} in the Dockerfile"));
    let end = all[start + 1..]
        .iter()
        .position(|i| i.keyword == "FROM")
        .map_or(all.len(), |n| start + 1 + n);
    &all[start + 1..end]
}

/// The top-level entries of the context that `.dockerignore` admits. Only the patterns
/// this repository's file uses are understood (`*`, a name, `!name`, `!dir/`); anything
/// else fails the test rather than being misread.
fn admitted(dockerignore: &str, entries: &[String]) -> Vec<String> {
    let patterns: Vec<(bool, String)> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.strip_prefix('!') {
            Some(p) => (false, p.trim_end_matches('/').to_string()),
            None => (true, l.trim_end_matches('/').to_string()),
        })
        .collect();
    for (_, p) in &patterns {
        assert!(
            p == "*" || !p.contains(['*', '?', '[', '/']),
            ".dockerignore pattern {p:?} is beyond what this test understands"
        );
    }
    entries
        .iter()
        .filter(|name| {
            let mut excluded = false;
            for (exclude, p) in &patterns {
                if p == "*" || p == *name {
                    excluded = *exclude;
                }
            }
            !excluded
        })
        .cloned()
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// `KEY=value` pairs of an ENV or ARG line (values without spaces or quotes).
fn pairs(args: &str) -> Vec<(String, String)> {
    args.split_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.trim_matches('"').to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// The toolchain step: every `name=version` it installs must be installed at that version,
/// every target it adds must be installed.
fn check_toolchain(run: &str) {
    let mut words = run.split_whitespace();
    let mut pinned = 0;
    while let Some(w) = words.next() {
        if let Some((name, version)) = w.split_once('=').filter(|_| !w.starts_with('-')) {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Version}", name])
                .output()
                .expect("dpkg-query");
            let have = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(
                have, version,
                "the Dockerfile pins {name}={version}; this machine has {have:?} (.ci/run installs it)"
            );
            pinned += 1;
        }
        if w == "add" {
            let installed = String::from_utf8_lossy(
                &Command::new("rustup")
                    .args(["target", "list", "--installed"])
                    .output()
                    .expect("rustup")
                    .stdout,
            )
            .into_owned();
            for target in words.by_ref().take_while(|w| !w.starts_with("&&")) {
                assert!(
                    installed.lines().any(|l| l == target),
                    "rustup target {target} is not installed (.ci/run adds it)"
                );
            }
        }
    }
    assert!(pinned > 0, "no pinned package in {run}");
}

/// Machine and whether the ELF file has an interpreter (is dynamically linked).
fn elf(path: &Path) -> (u16, bool) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(b[4], 2, "64-bit");
    assert_eq!(b[5], 1, "little-endian");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let machine = u16_at(18);
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    let interp = (0..phnum as usize).any(|i| u32_at(phoff + i * phentsize) == 3); // PT_INTERP
    (machine, interp)
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// Runs the build stage for `arch`; returns the work directory (with `out/`).
fn build_stage(arch: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("poolwatch-docker-build-{arch}"));
    let _ = std::fs::remove_dir_all(&root);
    let context = root.join("context");
    std::fs::create_dir_all(&context).unwrap();
    let mut entries: Vec<String> = std::fs::read_dir(repo())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let dockerignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let admitted = admitted(&dockerignore, &entries);
    for name in &admitted {
        copy_tree(&repo().join(name), &context.join(name));
    }
    eprintln!("context ({arch}): {admitted:?}");
    assert!(
        !admitted.iter().any(|n| n == "target" || n == ".git"),
        "{admitted:?}"
    );

    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let all = instructions(&dockerfile);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "CARGO_TARGET_DIR".into(),
        std::env::temp_dir()
            .join("poolwatch-builder-target")
            .to_string_lossy()
            .into_owned(),
    );
    let mut workdir = root.join("fs");
    let mut ran = 0;
    for step in stage(&all, "build") {
        match step.keyword.as_str() {
            "ARG" => {
                for (k, v) in pairs(&step.args) {
                    let v = if k == "TARGETARCH" {
                        arch.to_string()
                    } else {
                        v
                    };
                    env.insert(k, v);
                }
            }
            "ENV" => env.extend(pairs(&step.args)),
            "WORKDIR" => {
                workdir = root.join("fs").join(step.args.trim_start_matches('/'));
                std::fs::create_dir_all(&workdir).unwrap();
            }
            "COPY" => {
                let parts: Vec<&str> = step.args.split_whitespace().collect();
                assert!(!step.args.starts_with("--"), "COPY {}: flags", step.args);
                let (dest, sources) = parts.split_last().unwrap();
                for source in sources {
                    let from = context.join(source);
                    assert!(
                        from.exists(),
                        "COPY {source}: not in the context that .dockerignore admits"
                    );
                    let to = if dest.ends_with('/') || sources.len() > 1 {
                        workdir
                            .join(dest)
                            .join(Path::new(source).file_name().unwrap())
                    } else {
                        workdir.join(dest)
                    };
                    copy_tree(&from, &to);
                }
            }
            "RUN" if step.args.starts_with("apt-get update") => check_toolchain(&step.args),
            "RUN" => {
                let started = Instant::now();
                let status = Command::new("sh")
                    .args(["-c", &step.args])
                    .current_dir(&workdir)
                    .envs(&env)
                    .stdout(Stdio::null())
                    .status()
                    .expect("sh");
                eprintln!(
                    "RUN ({arch}, {:.0} s): {}",
                    started.elapsed().as_secs_f64(),
                    step.args
                );
                assert!(status.success(), "RUN {} failed: {status}", step.args);
                ran += 1;
            }
            other => panic!("{other} in the build stage: teach tests/docker.rs what it does"),
        }
    }
    assert!(ran >= 2, "the build stage ran {ran} RUN steps");
    workdir
}

/// Starts `command` (the binary, maybe behind qemu) on a free port and waits for
/// `/metrics` to say `poolwatch_build_info`.
async fn serves_metrics(mut command: Command) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("start poolwatch");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break common::http(addr, "GET", "/metrics", None).await.body;
        }
        assert!(Instant::now() < deadline, "poolwatch did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.contains("poolwatch_build_info{"), "{body}");
}

#[tokio::test]
async fn builder_stage_builds_a_static_amd64_binary_from_the_admitted_context() {
    if !common::in_ci() && common::require_tool("musl-gcc").is_none() {
        return;
    }
    let work = build_stage("amd64");
    let binary = work.join("out/poolwatch");
    assert_eq!(elf(&binary), (EM_X86_64, false), "static x86_64");
    assert!(work.join("out/etc/ssl/certs/ca-certificates.crt").is_file());
    let size = std::fs::metadata(&binary).unwrap().len();
    eprintln!("amd64 binary: {size} bytes");
    serves_metrics(Command::new(&binary)).await;
}

#[tokio::test]
async fn builder_stage_builds_a_static_arm64_binary_that_runs_under_qemu() {
    if !common::in_ci() && common::require_tool("aarch64-linux-gnu-gcc").is_none() {
        return;
    }
    let Some(qemu) = common::require_tool("qemu-aarch64") else {
        return;
    };
    let work = build_stage("arm64");
    let binary = work.join("out/poolwatch");
    assert_eq!(elf(&binary), (EM_AARCH64, false), "static aarch64");
    let size = std::fs::metadata(&binary).unwrap().len();
    eprintln!("arm64 binary: {size} bytes");
    let mut command = Command::new(qemu);
    command.arg(&binary);
    serves_metrics(command).await;
}

#[test]
fn the_interpreter_refuses_what_it_does_not_understand() {
    let entries: Vec<String> = ["Cargo.toml", "src", "target", "docs"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        admitted("*\n!Cargo.toml\n!src/\n", &entries),
        ["Cargo.toml", "src"]
    );
    assert_eq!(
        admitted("target\n", &entries),
        ["Cargo.toml", "src", "docs"]
    );
    assert!(std::panic::catch_unwind(|| admitted("**/*.md\n", &entries)).is_err());
    let parsed = instructions("FROM a AS build\n# c\nRUN x \\\n  # inner\n  && y\nFROM b\n");
    let build = stage(&parsed, "build");
    assert_eq!(build.len(), 1);
    assert_eq!(build[0].args, "x  && y");
}
