//! The demo plays its whole story against the real service and the emulators, and stops with `--no-wait`.

use std::process::Command;

#[test]
fn the_demo_plays_its_story() {
    let out = Command::new(env!("CARGO_BIN_EXE_wabridge-demo"))
        .args(["--listen", "127.0.0.1:0", "--no-wait"])
        .output()
        .expect("run wabridge-demo");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for said in [
        "portal 1 installed (HTTP 201)",
        "phone bound to open line 1",
        "it appeared in the portal's open line 1",
        "Meta reported delivered and read",
        "the portal's SMS status moved to delivered",
        "\"language\":\"pt\"",
        "sent in \"pt\" (pt_BR -> pt)",
        "Console:    http://127.0.0.1:",
    ] {
        assert!(text.contains(said), "{said:?} missing from:\n{text}");
    }
}
