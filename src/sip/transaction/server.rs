//! Server transactions (RFC 3261 §17.2): the edge's side toward whoever sent the request. `R` is
//! the response as the caller sends it (bytes in the edge); the machine keeps the last one to
//! answer retransmissions.
//!
//! INVITE (§17.2.1, with RFC 6026's Accepted state):
//!
//! | state      | event                   | actions                                      | next       |
//! |------------|-------------------------|----------------------------------------------|------------|
//! | Proceeding | INVITE again            | send the last provisional, if any            | Proceeding |
//! | Proceeding | 1xx from the TU         | send                                         | Proceeding |
//! | Proceeding | 2xx from the TU         | send; arm L                                  | Accepted   |
//! | Proceeding | 300-699 from the TU     | send; arm G (unreliable), H                  | Completed  |
//! | Completed  | INVITE again / timer G  | send the final again (G doubles up to T2)    | Completed  |
//! | Completed  | ACK                     | (absorbed); arm I (unreliable)               | Confirmed  |
//! | Completed  | timer H                 | (no ACK ever came)                           | Terminated |
//! | Confirmed  | ACK again               | (absorbed)                                   | Confirmed  |
//! | Confirmed  | timer I                 |                                              | Terminated |
//! | Accepted   | INVITE again            | (absorbed)                                   | Accepted   |
//! | Accepted   | ACK                     | pass up (a 2xx ACK that reused the branch)   | Accepted   |
//! | Accepted   | timer L                 |                                              | Terminated |
//! | any        | 2xx from the TU after a final | send (a proxy relays every 2xx, §16.7 step 10) | same |
//! | any        | other response after a final  | (dropped)                              | same       |
//! | Proceeding | ACK                     | pass up                                      | Proceeding |
//!
//! non-INVITE (§17.2.2):
//!
//! | state      | event                   | actions                                      | next       |
//! |------------|-------------------------|----------------------------------------------|------------|
//! | Trying     | request again           | (absorbed)                                   | Trying     |
//! | Tr./Pr.    | 1xx from the TU         | send                                         | Proceeding |
//! | Proceeding | request again           | send the last provisional                    | Proceeding |
//! | Tr./Pr.    | 200-699 from the TU     | send; arm J (unreliable)                     | Completed  |
//! | Completed  | request again           | send the final again                         | Completed  |
//! | Completed  | timer J                 |                                              | Terminated |

use std::time::Duration;

use super::timer::{Armed, Time, TimerKind, Timers};

/// What happens to a server transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent<R> {
    /// The request arrived again.
    Retransmission,
    /// An ACK matched the transaction (INVITE only).
    Ack,
    /// The transaction user answers with this status and response.
    Respond(u16, R),
    /// A timer the machine armed fired (stale firings are ignored).
    Timer(TimerKind),
    /// A response could not be sent.
    TransportError,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAction<R> {
    /// Send this response to the request's source.
    SendResponse(R),
    /// The ACK is not the transaction's: hand it to the transaction user.
    PassUp,
    /// Deliver `ServerEvent::Timer(kind)` at this time.
    Arm(TimerKind, Time),
    /// The transaction is over: forget it.
    Terminated,
}

fn arm<R>(armed: &mut Armed, out: &mut Vec<ServerAction<R>>, kind: TimerKind, at: Time) {
    armed.arm(kind, at);
    out.push(ServerAction::Arm(kind, at));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerInvite<R> {
    state: ServerInviteState,
    timers: Timers,
    reliable: bool,
    interval: Duration,
    last: Option<R>,
    final_status: Option<u16>,
    armed: Armed,
}

impl<R: Clone> ServerInvite<R> {
    /// A new INVITE arrived over a `reliable` (TCP/TLS) or unreliable transport.
    pub fn new(timers: Timers, reliable: bool) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            timers,
            reliable,
            interval: timers.t1,
            last: None,
            final_status: None,
            armed: Armed::default(),
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// The first final status sent, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    fn terminate(&mut self, out: &mut Vec<ServerAction<R>>) {
        self.state = ServerInviteState::Terminated;
        self.armed.clear();
        out.push(ServerAction::Terminated);
    }

    pub fn handle(&mut self, event: ServerEvent<R>, now: Time) -> Vec<ServerAction<R>> {
        use ServerInviteState::*;
        let mut out = Vec::new();
        match (self.state, event) {
            (Proceeding, ServerEvent::Respond(code, resp)) => {
                out.push(ServerAction::SendResponse(resp.clone()));
                if code < 200 {
                    self.last = Some(resp);
                } else if code < 300 {
                    self.final_status = Some(code);
                    self.last = None;
                    self.state = Accepted;
                    arm(&mut self.armed, &mut out, TimerKind::L, now + self.timers.sixty_four_t1());
                } else {
                    self.final_status = Some(code);
                    self.last = Some(resp);
                    self.state = Completed;
                    if !self.reliable {
                        arm(&mut self.armed, &mut out, TimerKind::G, now + self.interval);
                    }
                    arm(&mut self.armed, &mut out, TimerKind::H, now + self.timers.sixty_four_t1());
                }
            }
            (_, ServerEvent::Respond(code, resp)) if (200..300).contains(&code) => {
                out.push(ServerAction::SendResponse(resp))
            }
            (_, ServerEvent::Respond(..)) => {}
            (Proceeding | Completed, ServerEvent::Retransmission) => {
                if let Some(last) = &self.last {
                    out.push(ServerAction::SendResponse(last.clone()));
                }
            }
            (_, ServerEvent::Retransmission) => {}
            (Completed, ServerEvent::Ack) => {
                self.armed.clear();
                let i = self.timers.t4_unless_reliable(self.reliable);
                if i.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.state = Confirmed;
                    arm(&mut self.armed, &mut out, TimerKind::I, now + i);
                }
            }
            (Confirmed | Terminated, ServerEvent::Ack) => {}
            (Proceeding | Accepted, ServerEvent::Ack) => out.push(ServerAction::PassUp),
            (Terminated, _) => {}
            (_, ServerEvent::TransportError) => self.terminate(&mut out),
            (state, ServerEvent::Timer(kind)) => {
                if !self.armed.take_due(kind, now) {
                    return out;
                }
                match (state, kind) {
                    (Completed, TimerKind::G) => {
                        if let Some(last) = &self.last {
                            out.push(ServerAction::SendResponse(last.clone()));
                        }
                        self.interval = self.timers.next_e(self.interval);
                        arm(&mut self.armed, &mut out, TimerKind::G, now + self.interval);
                    }
                    (Completed, TimerKind::H) | (Confirmed, TimerKind::I) | (Accepted, TimerKind::L) => {
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
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerNonInvite<R> {
    state: ServerNonInviteState,
    timers: Timers,
    reliable: bool,
    last: Option<R>,
    armed: Armed,
}

impl<R: Clone> ServerNonInvite<R> {
    pub fn new(timers: Timers, reliable: bool) -> Self {
        ServerNonInvite { state: ServerNonInviteState::Trying, timers, reliable, last: None, armed: Armed::default() }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    fn terminate(&mut self, out: &mut Vec<ServerAction<R>>) {
        self.state = ServerNonInviteState::Terminated;
        self.armed.clear();
        out.push(ServerAction::Terminated);
    }

    pub fn handle(&mut self, event: ServerEvent<R>, now: Time) -> Vec<ServerAction<R>> {
        use ServerNonInviteState::*;
        let mut out = Vec::new();
        match (self.state, event) {
            (Trying | Proceeding, ServerEvent::Respond(code, resp)) => {
                out.push(ServerAction::SendResponse(resp.clone()));
                self.last = Some(resp);
                if code < 200 {
                    self.state = Proceeding;
                } else {
                    let j = self.timers.j(self.reliable);
                    if j.is_zero() {
                        self.terminate(&mut out);
                    } else {
                        self.state = Completed;
                        arm(&mut self.armed, &mut out, TimerKind::J, now + j);
                    }
                }
            }
            (Proceeding | Completed, ServerEvent::Retransmission) => {
                if let Some(last) = &self.last {
                    out.push(ServerAction::SendResponse(last.clone()));
                }
            }
            (Terminated, _) => {}
            (_, ServerEvent::TransportError) => self.terminate(&mut out),
            (Completed, ServerEvent::Timer(TimerKind::J)) if self.armed.take_due(TimerKind::J, now) => {
                self.terminate(&mut out)
            }
            _ => {}
        }
        out
    }
}

/// Either server machine.
#[derive(Debug, Clone)]
pub enum ServerTxn<R> {
    Invite(ServerInvite<R>),
    NonInvite(ServerNonInvite<R>),
}

impl<R: Clone> ServerTxn<R> {
    pub fn handle(&mut self, event: ServerEvent<R>, now: Time) -> Vec<ServerAction<R>> {
        match self {
            ServerTxn::Invite(m) => m.handle(event, now),
            ServerTxn::NonInvite(m) => m.handle(event, now),
        }
    }

    pub fn is_terminated(&self) -> bool {
        match self {
            ServerTxn::Invite(m) => m.state() == ServerInviteState::Terminated,
            ServerTxn::NonInvite(m) => m.state() == ServerNonInviteState::Terminated,
        }
    }

    /// True while no final response was sent.
    pub fn awaits_final(&self) -> bool {
        match self {
            ServerTxn::Invite(m) => m.state() == ServerInviteState::Proceeding,
            ServerTxn::NonInvite(m) => {
                matches!(m.state(), ServerNonInviteState::Trying | ServerNonInviteState::Proceeding)
            }
        }
    }
}
