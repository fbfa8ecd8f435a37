//! Every benchmark program answers `--help` with its usage (and refuses an unknown flag cleanly) instead of
//! panicking.

use std::process::Command;

const PROGRAMS: &[(&str, &str)] = &[
    ("bench_memory", env!("CARGO_BIN_EXE_bench_memory")),
    ("bench_sender", env!("CARGO_BIN_EXE_bench_sender")),
    ("bench_sip", env!("CARGO_BIN_EXE_bench_sip")),
    ("bench_webhooks", env!("CARGO_BIN_EXE_bench_webhooks")),
];

#[test]
fn every_bench_program_has_help() {
    for (name, bin) in PROGRAMS {
        let out = Command::new(bin).arg("--help").output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{name} --help: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("Usage: {name}")) && text.contains("--"), "{name}: {text}");
        let out = Command::new(bin).arg("--no-such-flag").output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains("unexpected argument") && !err.contains("panicked"), "{name}: {err}");
    }
}
