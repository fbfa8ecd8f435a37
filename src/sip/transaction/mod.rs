//! SIP transactions as data (RFC 3261 §17): typed keys, typed state machines, timers as values.
//!
//! The machines are pure. Each takes an event (a response or request arrived, a timer fired, the
//! transport failed) and `now` from a [`Clock`] the caller owns, and returns actions (send this, pass
//! that up, arm timer X at t, terminated). They never read a clock, sleep or touch a socket; the
//! caller keeps the messages, the sockets and the timer tasks, and delivers every firing it scheduled
//! (a stale one — a timer since disarmed or pushed back — is ignored by the machine).
//!
//! - [`key::TransactionKey`]: which transaction a message belongs to.
//! - [`client::ClientInvite`], [`client::ClientNonInvite`]: toward the next hop (retransmissions on
//!   timers A/E, timeouts B/F, the hop-by-hop ACK for a non-2xx answer, timer C of a proxy).
//! - [`server::ServerInvite`], [`server::ServerNonInvite`]: toward the request's source (answers to
//!   retransmissions, timer G until the ACK, H, I, J, L).
//! - [`timer::Timers`]: the timer values from T1, T2, T4.
//!
//! Each module's doc has the machine's decision table.

pub mod client;
pub mod key;
pub mod server;
pub mod timer;

pub use client::{ClientAction, ClientEvent, ClientInvite, ClientInviteState, ClientNonInvite, ClientTxn};
pub use key::TransactionKey;
pub use server::{ServerAction, ServerEvent, ServerInvite, ServerInviteState, ServerNonInvite, ServerTxn};
pub use timer::{Clock, FakeClock, Time, TimerKind, Timers};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::client::ClientNonInviteState;
    use super::server::ServerNonInviteState;
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timers() -> Timers {
        Timers::default()
    }

    /// The time `kind` was armed for in `actions`.
    fn armed_at(actions: &[ClientAction], kind: TimerKind) -> Option<Time> {
        actions.iter().find_map(|a| match a {
            ClientAction::Arm(k, at) if *k == kind => Some(*at),
            _ => None,
        })
    }

    fn server_armed_at<R>(actions: &[ServerAction<R>], kind: TimerKind) -> Option<Time> {
        actions.iter().find_map(|a| match a {
            ServerAction::Arm(k, at) if *k == kind => Some(*at),
            _ => None,
        })
    }

    #[test]
    fn timer_a_retransmits_the_invite_doubling_each_time() {
        let clock = FakeClock::new();
        let (mut m, start) = ClientInvite::start(timers(), false, false, clock.now());
        assert_eq!(start[0], ClientAction::SendRequest);
        let mut next = armed_at(&start, TimerKind::A).unwrap();
        let mut gaps = Vec::new();
        let mut sends = 0;
        while next < clock.now() + Duration::from_secs(32) && next.since_origin() < timers().timeout {
            gaps.push(next.since(clock.now()));
            clock.set(next);
            let out = m.handle(ClientEvent::Timer(TimerKind::A), clock.now());
            sends += out.iter().filter(|a| **a == ClientAction::SendRequest).count();
            match armed_at(&out, TimerKind::A) {
                Some(at) => next = at,
                None => break,
            }
        }
        assert_eq!(gaps, [ms(500), ms(1000), ms(2000), ms(4000), ms(8000), ms(16000)], "A does not stop at T2");
        assert_eq!(sends, 6, "the INVITE went out 7 times in all within 64·T1");
        assert_eq!(m.state(), ClientInviteState::Calling);
    }

    #[test]
    fn timer_e_doubles_up_to_t2_and_is_t2_once_proceeding() {
        let clock = FakeClock::new();
        let (mut m, start) = ClientNonInvite::start(timers(), false, clock.now());
        let mut next = armed_at(&start, TimerKind::E).unwrap();
        let mut gaps = Vec::new();
        for _ in 0..6 {
            gaps.push(next.since(clock.now()));
            clock.set(next);
            let out = m.handle(ClientEvent::Timer(TimerKind::E), clock.now());
            assert!(out.contains(&ClientAction::SendRequest));
            next = armed_at(&out, TimerKind::E).unwrap();
        }
        assert_eq!(gaps, [ms(500), ms(1000), ms(2000), ms(4000), ms(4000), ms(4000)]);

        let (mut m, start) = ClientNonInvite::start(timers(), false, Time::ZERO);
        let first = armed_at(&start, TimerKind::E).unwrap();
        assert_eq!(m.handle(ClientEvent::Response(180), first), [ClientAction::PassUp]);
        assert_eq!(m.state(), ClientNonInviteState::Proceeding);
        let out = m.handle(ClientEvent::Timer(TimerKind::E), first);
        assert_eq!(armed_at(&out, TimerKind::E), Some(first + timers().t2), "proceeding: every T2");
    }

    #[test]
    fn reliable_transports_get_no_retransmissions() {
        let (_, start) = ClientInvite::start(timers(), true, false, Time::ZERO);
        assert_eq!(start, [ClientAction::SendRequest, ClientAction::Arm(TimerKind::B, Time::after(ms(32_000)))]);
        let (_, start) = ClientNonInvite::start(timers(), true, Time::ZERO);
        assert_eq!(start, [ClientAction::SendRequest, ClientAction::Arm(TimerKind::F, Time::after(ms(32_000)))]);
    }

    #[test]
    fn timer_b_and_f_time_out_with_408_up() {
        let clock = FakeClock::new();
        let (mut m, _) = ClientInvite::start(timers(), true, false, clock.now());
        clock.advance(ms(31_999));
        assert!(m.handle(ClientEvent::Timer(TimerKind::B), clock.now()).is_empty(), "early firing ignored");
        clock.advance(ms(1));
        let out = m.handle(ClientEvent::Timer(TimerKind::B), clock.now());
        assert_eq!(out, [ClientAction::Fail(408), ClientAction::Terminated]);
        assert_eq!(m.state(), ClientInviteState::Terminated);
        assert!(m.handle(ClientEvent::Response(200), clock.now()).is_empty(), "nothing after termination");

        let clock = FakeClock::new();
        let (mut m, _) = ClientNonInvite::start(timers(), false, clock.now());
        m.handle(ClientEvent::Response(100), clock.now());
        clock.advance(timers().timeout);
        let out = m.handle(ClientEvent::Timer(TimerKind::F), clock.now());
        assert_eq!(out, [ClientAction::Fail(408), ClientAction::Terminated], "a provisional does not stop F");
    }

    #[test]
    fn hundred_trying_stops_retransmissions_and_is_not_passed_up() {
        let clock = FakeClock::new();
        let (mut m, start) = ClientInvite::start(timers(), false, false, clock.now());
        assert!(m.handle(ClientEvent::Response(100), clock.now()).is_empty());
        assert_eq!(m.state(), ClientInviteState::Proceeding);
        clock.set(armed_at(&start, TimerKind::A).unwrap());
        assert!(m.handle(ClientEvent::Timer(TimerKind::A), clock.now()).is_empty(), "no more retransmissions");
        clock.set(armed_at(&start, TimerKind::B).unwrap());
        assert!(m.handle(ClientEvent::Timer(TimerKind::B), clock.now()).is_empty(), "no timeout once proceeding");
        assert_eq!(m.handle(ClientEvent::Response(180), clock.now()), [ClientAction::PassUp]);
    }

    #[test]
    fn non_2xx_final_is_acked_hop_by_hop_then_absorbed_until_timer_d() {
        let clock = FakeClock::new();
        let (mut m, _) = ClientInvite::start(timers(), false, false, clock.now());
        m.handle(ClientEvent::Response(180), clock.now());
        let out = m.handle(ClientEvent::Response(486), clock.now());
        assert_eq!(&out[..2], [ClientAction::PassUp, ClientAction::SendAck]);
        let d = armed_at(&out, TimerKind::D).unwrap();
        assert_eq!(d, clock.now() + Duration::from_secs(32));
        clock.advance(ms(700));
        assert_eq!(m.handle(ClientEvent::Response(486), clock.now()), [ClientAction::SendAck], "re-ACKed, not relayed");
        assert!(m.handle(ClientEvent::Response(200), clock.now()).is_empty());
        clock.set(d);
        assert_eq!(m.handle(ClientEvent::Timer(TimerKind::D), clock.now()), [ClientAction::Terminated]);

        let (mut m, _) = ClientInvite::start(timers(), true, false, Time::ZERO);
        let out = m.handle(ClientEvent::Response(603), Time::ZERO);
        assert_eq!(out, [ClientAction::PassUp, ClientAction::SendAck, ClientAction::Terminated], "D is 0 over TCP/TLS");
    }

    #[test]
    fn two_xx_is_accepted_and_its_retransmissions_go_up_until_timer_m() {
        let clock = FakeClock::new();
        let (mut m, _) = ClientInvite::start(timers(), false, true, clock.now());
        let out = m.handle(ClientEvent::Response(200), clock.now());
        assert_eq!(out[0], ClientAction::PassUp);
        assert!(!out.contains(&ClientAction::SendAck), "the ACK for a 2xx is end-to-end");
        assert_eq!(m.state(), ClientInviteState::Accepted);
        let at = armed_at(&out, TimerKind::M).unwrap();
        assert_eq!(m.handle(ClientEvent::Response(200), clock.now()), [ClientAction::PassUp]);
        clock.set(Time::after(timers().c));
        assert!(m.handle(ClientEvent::Timer(TimerKind::C), clock.now()).is_empty(), "timer C is off once answered");
        clock.set(at);
        assert_eq!(m.handle(ClientEvent::Timer(TimerKind::M), clock.now()), [ClientAction::Terminated]);
    }

    #[test]
    fn transport_error_fails_with_503() {
        let (mut m, _) = ClientInvite::start(timers(), true, true, Time::ZERO);
        assert_eq!(
            m.handle(ClientEvent::TransportError, Time::ZERO),
            [ClientAction::Fail(503), ClientAction::Terminated]
        );
        let (mut m, _) = ClientNonInvite::start(timers(), true, Time::ZERO);
        assert_eq!(
            m.handle(ClientEvent::TransportError, Time::ZERO),
            [ClientAction::Fail(503), ClientAction::Terminated]
        );
    }

    #[test]
    fn timer_c_cancels_a_ringing_invite_and_answers_408() {
        let clock = FakeClock::new();
        let t = Timers { c: Duration::from_secs(60), ..timers() };
        let (mut m, start) = ClientInvite::start(t, false, true, clock.now());
        assert_eq!(armed_at(&start, TimerKind::C), Some(Time::after(Duration::from_secs(60))));
        clock.advance(Duration::from_secs(10));
        let out = m.handle(ClientEvent::Response(180), clock.now());
        let c = armed_at(&out, TimerKind::C).unwrap();
        assert_eq!(c, Time::after(Duration::from_secs(70)), "each 101-199 pushes timer C back");
        clock.set(Time::after(Duration::from_secs(60)));
        assert!(m.handle(ClientEvent::Timer(TimerKind::C), clock.now()).is_empty(), "the old deadline is stale");
        clock.set(c);
        let out = m.handle(ClientEvent::Timer(TimerKind::C), clock.now());
        assert_eq!(&out[..2], [ClientAction::Fail(408), ClientAction::Cancel], "408 up first, then CANCEL");
        // The 487 the CANCEL brings is ACKed; it goes up, and the caller drops it (408 was the answer).
        let out = m.handle(ClientEvent::Response(487), clock.now());
        assert_eq!(&out[..2], [ClientAction::PassUp, ClientAction::SendAck]);

        // Nothing came back at all (over TCP, before timer B): 408, nothing to cancel.
        let t = Timers { c: Duration::from_secs(1), ..timers() };
        let (mut m, _) = ClientInvite::start(t, true, true, Time::ZERO);
        let out = m.handle(ClientEvent::Timer(TimerKind::C), Time::after(Duration::from_secs(1)));
        assert_eq!(out[0], ClientAction::Fail(408));
        assert!(!out.contains(&ClientAction::Cancel));
        // The branch still gets 64·T1 to answer, then it is forgotten without another 408.
        let b = armed_at(&out, TimerKind::B).unwrap();
        assert_eq!(m.handle(ClientEvent::Timer(TimerKind::B), b), [ClientAction::Terminated]);
    }

    #[test]
    fn server_invite_resends_its_final_answer_on_timer_g_until_the_ack() {
        let clock = FakeClock::new();
        let mut m: ServerInvite<&str> = ServerInvite::new(timers(), false);
        assert_eq!(m.handle(ServerEvent::Respond(180, "180"), clock.now())[0], ServerAction::SendResponse("180"));
        assert_eq!(m.handle(ServerEvent::Retransmission, clock.now()), [ServerAction::SendResponse("180")]);
        let out = m.handle(ServerEvent::Respond(486, "486"), clock.now());
        assert_eq!(out[0], ServerAction::SendResponse("486"));
        assert_eq!(m.final_status(), Some(486));
        let h = server_armed_at(&out, TimerKind::H).unwrap();
        assert_eq!(h, clock.now() + Duration::from_secs(32));
        let mut next = server_armed_at(&out, TimerKind::G).unwrap();
        let mut gaps = Vec::new();
        for _ in 0..5 {
            gaps.push(next.since(clock.now()));
            clock.set(next);
            let out = m.handle(ServerEvent::Timer(TimerKind::G), clock.now());
            assert_eq!(out[0], ServerAction::SendResponse("486"));
            next = server_armed_at(&out, TimerKind::G).unwrap();
        }
        assert_eq!(gaps, [ms(500), ms(1000), ms(2000), ms(4000), ms(4000)], "G doubles up to T2");
        assert_eq!(m.handle(ServerEvent::Retransmission, clock.now()), [ServerAction::SendResponse("486")]);
        assert!(m.handle(ServerEvent::Respond(487, "487"), clock.now()).is_empty(), "one final answer only");
        assert_eq!(
            m.handle(ServerEvent::Respond(200, "200"), clock.now()),
            [ServerAction::SendResponse("200")],
            "2xx always relayed"
        );
        let out = m.handle(ServerEvent::Ack, clock.now());
        assert_eq!(m.state(), ServerInviteState::Confirmed);
        let i = server_armed_at(&out, TimerKind::I).unwrap();
        assert_eq!(i, clock.now() + Duration::from_secs(5), "I = T4");
        clock.set(next);
        assert!(m.handle(ServerEvent::Timer(TimerKind::G), clock.now()).is_empty(), "the ACK stopped G");
        assert!(m.handle(ServerEvent::Ack, clock.now()).is_empty(), "ACK retransmissions are absorbed");
        clock.set(i);
        assert_eq!(m.handle(ServerEvent::Timer(TimerKind::I), clock.now()), [ServerAction::Terminated]);
    }

    #[test]
    fn server_invite_gives_up_on_timer_h_and_sends_once_over_reliable_transports() {
        let clock = FakeClock::new();
        let mut m: ServerInvite<u16> = ServerInvite::new(timers(), true);
        let out = m.handle(ServerEvent::Respond(408, 408), clock.now());
        assert_eq!(server_armed_at(&out, TimerKind::G), None, "no G over TCP/TLS");
        let h = server_armed_at(&out, TimerKind::H).unwrap();
        clock.set(h);
        assert_eq!(m.handle(ServerEvent::Timer(TimerKind::H), clock.now()), [ServerAction::Terminated]);

        let mut m: ServerInvite<u16> = ServerInvite::new(timers(), true);
        m.handle(ServerEvent::Respond(503, 503), Time::ZERO);
        assert_eq!(m.handle(ServerEvent::Ack, Time::ZERO), [ServerAction::Terminated], "I is 0 over TCP/TLS");
    }

    #[test]
    fn server_invite_accepted_absorbs_retransmissions_until_timer_l() {
        let clock = FakeClock::new();
        let mut m: ServerInvite<u16> = ServerInvite::new(timers(), false);
        assert!(m.handle(ServerEvent::Retransmission, clock.now()).is_empty(), "nothing sent yet: nothing to resend");
        assert_eq!(m.handle(ServerEvent::Ack, clock.now()), [ServerAction::PassUp]);
        let out = m.handle(ServerEvent::Respond(200, 200), clock.now());
        assert_eq!(m.state(), ServerInviteState::Accepted);
        assert!(m.handle(ServerEvent::Retransmission, clock.now()).is_empty());
        assert_eq!(m.handle(ServerEvent::Respond(200, 200), clock.now()), [ServerAction::SendResponse(200)]);
        assert_eq!(m.handle(ServerEvent::Ack, clock.now()), [ServerAction::PassUp], "a 2xx ACK goes end-to-end");
        clock.set(server_armed_at(&out, TimerKind::L).unwrap());
        assert_eq!(m.handle(ServerEvent::Timer(TimerKind::L), clock.now()), [ServerAction::Terminated]);
    }

    #[test]
    fn timers_j_and_k_absorb_retransmissions() {
        let clock = FakeClock::new();
        let mut s: ServerNonInvite<&str> = ServerNonInvite::new(timers(), false);
        assert!(s.handle(ServerEvent::Retransmission, clock.now()).is_empty(), "trying: absorbed");
        let out = s.handle(ServerEvent::Respond(200, "200"), clock.now());
        let j = server_armed_at(&out, TimerKind::J).unwrap();
        assert_eq!(j, clock.now() + Duration::from_secs(32));
        clock.advance(Duration::from_secs(10));
        assert_eq!(s.handle(ServerEvent::Retransmission, clock.now()), [ServerAction::SendResponse("200")]);
        clock.set(j);
        assert_eq!(s.handle(ServerEvent::Timer(TimerKind::J), clock.now()), [ServerAction::Terminated]);
        assert_eq!(s.state(), ServerNonInviteState::Terminated);
        let mut s: ServerNonInvite<&str> = ServerNonInvite::new(timers(), true);
        assert_eq!(s.handle(ServerEvent::Respond(200, "200"), Time::ZERO)[1], ServerAction::Terminated);

        let clock = FakeClock::new();
        let (mut c, _) = ClientNonInvite::start(timers(), false, clock.now());
        let out = c.handle(ClientEvent::Response(200), clock.now());
        assert_eq!(out[0], ClientAction::PassUp);
        let k = armed_at(&out, TimerKind::K).unwrap();
        assert_eq!(k, clock.now() + Duration::from_secs(5), "K = T4");
        assert!(c.handle(ClientEvent::Response(200), clock.now()).is_empty(), "retransmitted answer absorbed");
        assert!(c.handle(ClientEvent::Timer(TimerKind::E), k).is_empty(), "E stopped");
        assert_eq!(c.handle(ClientEvent::Timer(TimerKind::K), k), [ClientAction::Terminated]);
        let (mut c, _) = ClientNonInvite::start(timers(), true, Time::ZERO);
        assert_eq!(c.handle(ClientEvent::Response(200), Time::ZERO), [ClientAction::PassUp, ClientAction::Terminated]);
    }
}
