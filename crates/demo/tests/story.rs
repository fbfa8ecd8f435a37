//! The demo plays its whole story against the real service and the emulators, and stops with `--no-wait`. With
//! SIPp installed the story ends with a WhatsApp call through the SIP edge to SIPp as the PBX; a missing SIPp
//! fails the test unless `WABRIDGE_TEST_SKIP` names `sipp`, the rule of the whole suite (`tests/it/common`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the call step is to be checked. SIPp missing: a failure saying what to run, unless
/// `WABRIDGE_TEST_SKIP` names `sipp`; then the skip is recorded for `scripts/test`'s summary and false.
fn call_step_checked(test: &str) -> bool {
    let Err(why) = wabridge_sandbox::sip::sipp::installed() else { return true };
    let skip = std::env::var("WABRIDGE_TEST_SKIP").unwrap_or_default();
    if !skip.split(',').any(|s| s.trim().eq_ignore_ascii_case("sipp")) {
        panic!(
            "this test needs sipp, which is not available ({why}): install SIPp (Debian: `apt-get install \
             sip-tester`); `scripts/test` does this for you; or set WABRIDGE_TEST_SKIP=sipp to leave such tests out \
             on purpose"
        );
    }
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log");
    let line = format!("sipp\t{}\t{test}\t{why}\n", env!("CARGO_CRATE_NAME"));
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = f.write_all(line.as_bytes());
    }
    eprintln!("left out on purpose (WABRIDGE_TEST_SKIP, recorded for the summary): {test} needs sipp");
    false
}

#[test]
fn the_demo_plays_its_story() {
    let with_call = call_step_checked("the_demo_plays_its_story (its call step)");
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
    if !with_call {
        assert!(
            text.contains("skipped, SIPp is not installed") && text.contains("apt-get install sip-tester"),
            "{text}"
        );
        return;
    }
    // The call step, in order.
    let mut at = 0;
    for said in [
        "calling enabled at Meta: status \"ENABLED\", SIP \"ENABLED\" -> sip.wabridge.test:",
        "digest challenge on",
        "the PBX: SIPp (pid ",
        "Meta dials the number's SIP server sip.wabridge.test:",
        "Meta -> edge   INVITE sip:+5511930001234;tgrp=wacall@sip.wabridge.test;transport=tls",
        "edge -> Meta   SIP/2.0 407 Proxy Authentication Required",
        "Meta -> edge   INVITE again, with Proxy-Authorization",
        "edge -> Meta   SIP/2.0 100 Trying",
        "edge -> PBX    INVITE sip:+5511930001234;tgrp=wacall@127.0.0.1:",
        "PBX -> edge    SIP/2.0 180 Ringing",
        "edge -> Meta   SIP/2.0 180 Ringing",
        "PBX -> edge    SIP/2.0 200 OK",
        "edge -> Meta   SIP/2.0 200 OK (the PBX's SDP answer: m=audio ",
        "Meta -> edge   ACK",
        "edge -> PBX    ACK sip:asterisk@127.0.0.1:",
        "calls list: wacid.demo-1 inbound +5511987654321 -> +5511930001234, status 200, answered ",
        ", in progress",
        "Meta -> edge   BYE",
        "edge -> PBX    BYE sip:asterisk@127.0.0.1:",
        "PBX -> edge    SIP/2.0 200 OK",
        "edge -> Meta   SIP/2.0 200 OK (3 BYE)",
        "the PBX saw the whole call as scripted (SIPp exited 0)",
        ", hung up by whatsapp_user",
        "the same list in the console: http://127.0.0.1:",
        "event call.started delivered to the shop (webhook-id msg_",
        "event call.ended delivered to the shop (webhook-id msg_",
    ] {
        let Some(i) = text[at..].find(said) else { panic!("{said:?} missing (in this order) from:\n{text}") };
        at += i + said.len();
    }
    assert!(!text.contains("skipped"), "{text}");
}

/// Ctrl-C in the middle of the call step stops the demo cleanly, and SIPp with it.
#[test]
fn ctrl_c_during_the_call_leaves_no_sipp_behind() {
    if !call_step_checked("ctrl_c_during_the_call_leaves_no_sipp_behind") {
        return;
    }
    let mut demo = Command::new(env!("CARGO_BIN_EXE_wabridge-demo"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run wabridge-demo");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let pid = loop {
        let line = lines.next().expect("the demo got as far as starting SIPp").unwrap();
        if let Some(rest) = line.split("SIPp (pid ").nth(1) {
            break rest.split(')').next().unwrap().to_string();
        }
    };
    let kill = Command::new("kill").args(["-INT", &demo.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20)); // polling a child's exit with a deadline
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("Stopped (Ctrl-C)")), "{rest:?}");
    // SIPp was the demo's child: once reaped it is gone from /proc (or the number now names another program).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_ne!(comm.trim(), "sipp", "SIPp (pid {pid}) outlived the demo");
}
