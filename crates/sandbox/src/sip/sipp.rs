//! SIPp (Debian package `sip-tester`) as the business's PBX: one call of a UAS scenario, then it exits. Used by
//! the SIP edge tests and the demo.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `sipp` runs here (on `PATH`).
pub fn installed() -> Result<(), String> {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|e| format!("`sipp -v` did not run: {e}"))
}

/// A UDP port free on 127.0.0.1 when asked (0 when none could be had).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Whether process `pid` has its own socket bound to `port` (TCP: listening; UDP: bound), read from
/// /proc/net/{tcp,udp} (the socket's inode) and /proc/PID/fd, so that no connection of ours reaches SIPp and a
/// socket of somebody else on that port does not count.
pub fn child_bound(pid: u32, port: u16, tcp: bool) -> bool {
    let (table, state) = if tcp { ("/proc/net/tcp", "0A") } else { ("/proc/net/udp", "07") };
    let needle = format!(":{port:04X}");
    let inodes: Vec<String> = std::fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() > 9 && cols[1].ends_with(&needle) && cols[3] == state).then(|| format!("socket:[{}]", cols[9]))
        })
        .collect();
    !inodes.is_empty()
        && std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
            })
        })
}

/// SIPp playing one call of a UAS scenario on 127.0.0.1; killed when dropped (it also gives up by itself after
/// 20 s: `-timeout 20`).
pub struct Sipp {
    child: Child,
    /// The port SIPp listens on (127.0.0.1).
    pub port: u16,
}

impl Sipp {
    /// SIPp on 127.0.0.1 playing `scenario` (a file) over `transport` (`u1` UDP, `t1` TCP), on a free port.
    pub fn uas(scenario: &Path, transport: &str) -> Result<Sipp, String> {
        Sipp::uas_from(scenario, transport, free_port(), &[])
    }

    /// Starts SIPp on `first_port` with `extra` arguments and returns once SIPp's own socket is bound (listening,
    /// for TCP): a call sent earlier would get 503 from the edge. `free_port` only knows the port is free for
    /// UDP; when SIPp cannot bind it (the number is held by a TCP connection, or one in TIME_WAIT, of a busy
    /// machine) SIPp exits and is started again on another port.
    pub fn uas_from(scenario: &Path, transport: &str, first_port: u16, extra: &[&str]) -> Result<Sipp, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut port = first_port;
        loop {
            let mut child = Command::new("sipp")
                .arg("-sf")
                .arg(scenario)
                .args(["-i", "127.0.0.1", "-p", &port.to_string()])
                .args(["-t", transport, "-m", "1", "-timeout", "20", "-timeout_error", "-nostdin", "-nr"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("sipp does not start: {e}"))?;
            loop {
                if child_bound(child.id(), port, transport.starts_with('t')) {
                    return Ok(Sipp { child, port });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // could not bind: try another port
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("SIPp never bound a port".into());
                }
                std::thread::sleep(Duration::from_millis(10)); // polling a child process with a deadline
            }
            port = free_port();
        }
    }

    /// SIPp's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most 25 s) for SIPp to finish its call; true when it went as scripted (exit status 0).
    pub fn finished_ok(mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                return false; // killed by Drop
            }
            std::thread::sleep(Duration::from_millis(20)); // polling a child process with a deadline
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
