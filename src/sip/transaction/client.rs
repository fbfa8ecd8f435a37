//! Client transactions (RFC 3261 §17.1): the edge's side toward the next hop.
//!
//! INVITE (§17.1.1, with RFC 6026's Accepted state and the proxy's timer C of §16.8):
//!
//! | state      | event                 | actions                                   | next       |
//! |------------|-----------------------|-------------------------------------------|------------|
//! | (start)    |                       | send; arm A (unreliable), B, C            | Calling    |
//! | Calling    | timer A               | send again; A doubles                     | Calling    |
//! | Calling    | timer B               | fail 408                                  | Terminated |
//! | Calling    | transport error       | fail 503                                  | Terminated |
//! | Calling/Pr.| 100                   | (stops A and B; not passed up)            | Proceeding |
//! | Calling/Pr.| 101-199               | pass up; C pushed back                    | Proceeding |
//! | Calling/Pr.| 2xx                   | pass up; arm M                            | Accepted   |
//! | Calling/Pr.| 300-699               | pass up; ACK; arm D (unreliable)          | Completed  |
//! | Calling/Pr.| timer C               | fail 408; CANCEL if Proceeding; arm B     | Proceeding |
//! | Proceeding | timer B (after C)     | (the branch never answered the CANCEL)    | Terminated |
//! | Completed  | 300-699 again         | ACK again                                 | Completed  |
//! | Accepted   | 2xx again             | pass up                                   | Accepted   |
//! | Completed  | timer D               |                                           | Terminated |
//! | Accepted   | timer M               |                                           | Terminated |
//!
//! non-INVITE (§17.1.2):
//!
//! | state      | event                 | actions                                   | next       |
//! |------------|-----------------------|-------------------------------------------|------------|
//! | (start)    |                       | send; arm E (unreliable), F               | Trying     |
//! | Trying     | timer E               | send again; E doubles up to T2            | Trying     |
//! | Proceeding | timer E               | send again; E = T2                        | Proceeding |
//! | Tr./Pr.    | timer F               | fail 408                                  | Terminated |
//! | Tr./Pr.    | transport error       | fail 503                                  | Terminated |
//! | Tr./Pr.    | 1xx                   | pass up (not 100)                         | Proceeding |
//! | Tr./Pr.    | 200-699               | pass up; arm K (unreliable)               | Completed  |
//! | Completed  | any response          | (absorbed)                                | Completed  |
//! | Completed  | timer K               |                                           | Terminated |

use std::time::Duration;

use super::timer::{Armed, Time, TimerKind, Timers};

/// What happens to a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response with this status arrived for the transaction.
    Response(u16),
    /// A timer the machine armed fired (stale firings are ignored).
    Timer(TimerKind),
    /// The request could not be sent.
    TransportError,
}

/// What the caller must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    /// Send the request (again).
    SendRequest,
    /// Send the ACK for the non-2xx final response just received (hop-by-hop, §17.1.1.3).
    SendAck,
    /// Hand the response just received to the transaction user (the proxy relays it).
    PassUp,
    /// No usable answer: the transaction user acts as if this final response came (408, 503).
    Fail(u16),
    /// Timer C after a provisional response: CANCEL the branch (§16.8).
    Cancel,
    /// Deliver `ClientEvent::Timer(kind)` at this time.
    Arm(TimerKind, Time),
    /// The transaction is over: forget it.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// An INVITE client transaction; with timer C when a proxy drives it.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: ClientInviteState,
    timers: Timers,
    reliable: bool,
    timer_c: bool,
    interval: Duration,
    armed: Armed,
}

fn arm(armed: &mut Armed, out: &mut Vec<ClientAction>, kind: TimerKind, at: Time) {
    armed.arm(kind, at);
    out.push(ClientAction::Arm(kind, at));
}

impl ClientInvite {
    /// Sends the INVITE. `reliable`: TCP/TLS (no retransmissions, D = 0). `timer_c`: the proxy's
    /// timer C runs (§16.8).
    pub fn start(timers: Timers, reliable: bool, timer_c: bool, now: Time) -> (Self, Vec<ClientAction>) {
        let mut m = ClientInvite {
            state: ClientInviteState::Calling,
            timers,
            reliable,
            timer_c,
            interval: timers.t1,
            armed: Armed::default(),
        };
        let mut out = vec![ClientAction::SendRequest];
        if !reliable {
            arm(&mut m.armed, &mut out, TimerKind::A, now + timers.t1);
        }
        arm(&mut m.armed, &mut out, TimerKind::B, now + timers.timeout);
        if timer_c {
            arm(&mut m.armed, &mut out, TimerKind::C, now + timers.c);
        }
        (m, out)
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// When `kind` fires next, if armed.
    pub fn deadline(&self, kind: TimerKind) -> Option<Time> {
        self.armed.deadline(kind)
    }

    fn terminate(&mut self, out: &mut Vec<ClientAction>) {
        self.state = ClientInviteState::Terminated;
        self.armed.clear();
        out.push(ClientAction::Terminated);
    }

    pub fn handle(&mut self, event: ClientEvent, now: Time) -> Vec<ClientAction> {
        use ClientInviteState::*;
        let mut out = Vec::new();
        match (self.state, event) {
            (Terminated, _) => {}
            (Calling | Proceeding, ClientEvent::Response(code)) if code < 200 => {
                self.state = Proceeding;
                self.armed.disarm(TimerKind::A);
                self.armed.disarm(TimerKind::B);
                if code > 100 {
                    if self.timer_c && self.armed.deadline(TimerKind::C).is_some() {
                        arm(&mut self.armed, &mut out, TimerKind::C, now + self.timers.c);
                    }
                    out.push(ClientAction::PassUp);
                }
            }
            (Calling | Proceeding, ClientEvent::Response(code)) if code < 300 => {
                self.state = Accepted;
                self.armed.clear();
                out.push(ClientAction::PassUp);
                arm(&mut self.armed, &mut out, TimerKind::M, now + self.timers.sixty_four_t1());
            }
            (Calling | Proceeding, ClientEvent::Response(_)) => {
                self.armed.clear();
                out.push(ClientAction::PassUp);
                out.push(ClientAction::SendAck);
                let d = self.timers.d(self.reliable);
                if d.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.state = Completed;
                    arm(&mut self.armed, &mut out, TimerKind::D, now + d);
                }
            }
            (Completed, ClientEvent::Response(code)) if code >= 300 => out.push(ClientAction::SendAck),
            (Accepted, ClientEvent::Response(code)) if (200..300).contains(&code) => out.push(ClientAction::PassUp),
            (Completed | Accepted, ClientEvent::Response(_)) => {}
            (Calling | Proceeding, ClientEvent::TransportError) => {
                out.push(ClientAction::Fail(503));
                self.terminate(&mut out);
            }
            (_, ClientEvent::TransportError) => {}
            (state, ClientEvent::Timer(kind)) => {
                if !self.armed.take_due(kind, now) {
                    return out;
                }
                match (state, kind) {
                    (Calling, TimerKind::A) => {
                        out.push(ClientAction::SendRequest);
                        self.interval = self.timers.next_a(self.interval);
                        arm(&mut self.armed, &mut out, TimerKind::A, now + self.interval);
                    }
                    (Calling, TimerKind::B) => {
                        out.push(ClientAction::Fail(408));
                        self.terminate(&mut out);
                    }
                    (Calling | Proceeding, TimerKind::C) => {
                        // Answer upstream first, so the 487 the CANCEL brings is not the final answer.
                        out.push(ClientAction::Fail(408));
                        self.armed.disarm(TimerKind::A);
                        if state == Proceeding {
                            out.push(ClientAction::Cancel);
                        }
                        // The branch gets 64·T1 (timer B) to answer the CANCEL, then it is forgotten.
                        self.state = Proceeding;
                        arm(&mut self.armed, &mut out, TimerKind::B, now + self.timers.timeout);
                    }
                    (Proceeding, TimerKind::B) | (Completed, TimerKind::D) | (Accepted, TimerKind::M) => {
                        self.terminate(&mut out)
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    timers: Timers,
    reliable: bool,
    interval: Duration,
    armed: Armed,
}

impl ClientNonInvite {
    pub fn start(timers: Timers, reliable: bool, now: Time) -> (Self, Vec<ClientAction>) {
        let mut m = ClientNonInvite {
            state: ClientNonInviteState::Trying,
            timers,
            reliable,
            interval: timers.t1,
            armed: Armed::default(),
        };
        let mut out = vec![ClientAction::SendRequest];
        if !reliable {
            arm(&mut m.armed, &mut out, TimerKind::E, now + timers.t1);
        }
        arm(&mut m.armed, &mut out, TimerKind::F, now + timers.timeout);
        (m, out)
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    fn terminate(&mut self, out: &mut Vec<ClientAction>) {
        self.state = ClientNonInviteState::Terminated;
        self.armed.clear();
        out.push(ClientAction::Terminated);
    }

    pub fn handle(&mut self, event: ClientEvent, now: Time) -> Vec<ClientAction> {
        use ClientNonInviteState::*;
        let mut out = Vec::new();
        match (self.state, event) {
            (Terminated, _) => {}
            (Trying | Proceeding, ClientEvent::Response(code)) if code < 200 => {
                self.state = Proceeding;
                if code > 100 {
                    out.push(ClientAction::PassUp);
                }
            }
            (Trying | Proceeding, ClientEvent::Response(_)) => {
                self.armed.clear();
                out.push(ClientAction::PassUp);
                let k = self.timers.t4_unless_reliable(self.reliable);
                if k.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.state = Completed;
                    arm(&mut self.armed, &mut out, TimerKind::K, now + k);
                }
            }
            (Completed, ClientEvent::Response(_)) => {}
            (Trying | Proceeding, ClientEvent::TransportError) => {
                out.push(ClientAction::Fail(503));
                self.terminate(&mut out);
            }
            (_, ClientEvent::TransportError) => {}
            (state, ClientEvent::Timer(kind)) => {
                if !self.armed.take_due(kind, now) {
                    return out;
                }
                match (state, kind) {
                    (Trying | Proceeding, TimerKind::E) => {
                        out.push(ClientAction::SendRequest);
                        self.interval =
                            if state == Proceeding { self.timers.t2 } else { self.timers.next_e(self.interval) };
                        arm(&mut self.armed, &mut out, TimerKind::E, now + self.interval);
                    }
                    (Trying | Proceeding, TimerKind::F) => {
                        out.push(ClientAction::Fail(408));
                        self.terminate(&mut out);
                    }
                    (Completed, TimerKind::K) => self.terminate(&mut out),
                    _ => {}
                }
            }
        }
        out
    }
}

/// Either client machine.
#[derive(Debug, Clone)]
pub enum ClientTxn {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl ClientTxn {
    pub fn handle(&mut self, event: ClientEvent, now: Time) -> Vec<ClientAction> {
        match self {
            ClientTxn::Invite(m) => m.handle(event, now),
            ClientTxn::NonInvite(m) => m.handle(event, now),
        }
    }

    pub fn is_terminated(&self) -> bool {
        match self {
            ClientTxn::Invite(m) => m.state() == ClientInviteState::Terminated,
            ClientTxn::NonInvite(m) => m.state() == ClientNonInviteState::Terminated,
        }
    }
}
