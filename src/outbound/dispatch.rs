//! The send dispatcher: the job engine's lane for `wa.send` (see [`crate::jobs::Lane`]).
//!
//! A generic worker runs one job at a time, so pacing a number's sends that way meant leasing its whole backlog
//! and putting most of it back (a write per send per look, found by `bench_sender`). The dispatcher instead:
//!
//! - **leases per number only what the number can send in about a second** (`throughput_mps` jobs, topped up
//!   when half is gone), in queue order, in one write transaction for every number that needs more; numbers
//!   with nothing due are looked at again when their next job is due, at the latest after [`POLL_MS`], or when
//!   new sends are committed ([`Lane::wake`]); a paused WABA's numbers are not leased at all;
//! - **holds the leased sends in memory and sends each in its slot** ([`PhonePacer`]: spaced `1020 / mps` ms,
//!   never more than `mps` started in any 1,020 ms); a send may go only once it is marked started in the
//!   database (marks are written in batches [`MARK_AHEAD_MS`] ahead), keeping messages to one customer in order and within the pair rate
//!   ([`PairPacer`]; a send whose pair slot is more than [`LOOKAHEAD_MS`] away goes back to the queue with its
//!   due time);
//! - **group-commits outcomes**: one writer task commits the outcome, report and job end of every send that
//!   finished meanwhile in one transaction (like the webhook intake), instead of one commit per send.
//!
//! The decisions (which held send goes now, which waits, which goes back to the queue) are made by [`Book`], a
//! pure struct over a clock in milliseconds (its doc has the decision table); the loop around it only runs the
//! feeder, the attempts and the writer as tasks and carries out what the book says.
//!
//! Nothing acknowledged is lost: a send's job is committed before it is leased, and stays leased (not done) until
//! the writer commits its outcome. If the process dies first, the lease expires: a send that was marked started
//! but has no outcome (`sender::admit`) is reconciled from status webhooks, never blindly resent; a send that was
//! only leased is simply sent.
//! Several processes on one database lease disjoint sends (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has
//! one writer), and a number is paced by one process at a time: a process leases a number's sends only while
//! it holds the number's claim (`lane_claims`, taken with each lease, renewed while it holds sends of the number,
//! expiring [`CLAIM_MS`] later, given up one pacing window after it stops), so together they stay within the
//! number's throughput.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::pace::{PairPacer, PhonePacer, Verdict, SLACK_MS};
use super::sender::{self, admit, Context, Outcome, Sender, ORDER_WAIT, PAUSE_WAIT};
use super::{Outbound, SendState};
use crate::jobs::catalogue::WaSend;
use crate::jobs::{self, Drained, Job, JobError, Kind, LaneLeaser, Task};
use crate::metrics::{KindLabels, Metrics};
use crate::store::{self, now_ms, Store, StoreError};

/// How far ahead a number's sends are leased and held: about this many milliseconds of its throughput.
pub const LOOKAHEAD_MS: i64 = 1000;
/// A number with nothing due is looked at again at least this often (expired leases of a dead process, sends
/// committed by another process).
pub const POLL_MS: i64 = 500;
/// A number's claim (only its holder leases the number's sends) lasts this long after its last renewal; it is
/// renewed with every lease and, while sends of the number are held or in flight, every [`CONTEXT_MS`].
const CLAIM_MS: i64 = 3000;
/// Held sends are marked started (one statement for all numbers) this far ahead of their slots; only a marked
/// send may go out.
const MARK_AHEAD_MS: i64 = 250;
/// Numbers' contexts (token, throughput, pause) are reloaded this often, and the claims and job leases of numbers
/// with sends held or in flight renewed.
const CONTEXT_MS: i64 = jobs::LANE_RENEW_MS;
/// Wake-ups (new sends committed) are handled at most this often.
const WAKE_MS: i64 = 20;
/// How many held sends are looked through for one that may go (customers waiting on the pair rate or on an
/// earlier message are skipped).
const SCAN: usize = 256;
/// The most outcomes one writer transaction commits.
const WRITE_BATCH: usize = 512;

pub struct Dispatcher {
    store: Store,
    sender: Arc<Sender>,
    leaser: LaneLeaser,
    /// Wakes the engine's generic workers after reports were queued.
    generic: Arc<Notify>,
    wake: Notify,
    woken: AtomicBool,
    metrics: Arc<Metrics>,
    concurrency: usize,
    /// The pacers outlive one run of the loop (tests drain many times); holding the lock is "the loop runs".
    pacing: tokio::sync::Mutex<Pacing>,
}

#[derive(Default)]
struct Pacing {
    phones: PhonePacer,
    pairs: PairPacer,
}

/// A leased send held in memory or in flight.
struct Item {
    job: Job,
    out: Arc<Outbound>,
    /// Marked started in the database: its request may go out.
    marked: bool,
}

/// An outcome for the writer.
struct Record {
    job: Job,
    out: Arc<Outbound>,
    outcome: Outcome,
}

/// A finished attempt, back from its task.
struct Finished {
    phone: i64,
    item: Item,
    outcome: Outcome,
}

/// One number's sends in this process.
#[derive(Default)]
struct PhoneLane {
    held: VecDeque<Item>,
    /// Customers with a send in flight (their later messages wait).
    inflight: HashMap<String, usize>,
    /// When to lease again; `None`: unknown, look (a cheap read) first.
    next_lease: Option<i64>,
    /// The last look found sends due now (a drain is not over).
    due: bool,
    /// The number's next slot, as the pacer last said (ms); 0 when unknown.
    slot_at: i64,
    /// How many held sends are marked started.
    marked: usize,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        sender: Arc<Sender>,
        leaser: LaneLeaser,
        generic: Arc<Notify>,
        metrics: Arc<Metrics>,
        concurrency: usize,
    ) -> Dispatcher {
        Dispatcher {
            store,
            sender,
            leaser,
            generic,
            wake: Notify::new(),
            woken: AtomicBool::new(false),
            metrics,
            concurrency: concurrency.max(1),
            pacing: tokio::sync::Mutex::new(Pacing::default()),
        }
    }

    /// Runs the loop: until `stop` turns true, or with `None` until nothing is due, held or in flight. A drain
    /// while the loop already runs (the workers are on) returns at once: the running loop does the work.
    async fn run_loop(&self, stop: Option<watch::Receiver<bool>>) -> Result<Drained, StoreError> {
        let mut pacing = match (&stop, self.pacing.try_lock()) {
            (_, Ok(p)) => p,
            (None, Err(_)) => return Ok(Drained::default()),
            (Some(_), Err(_)) => self.pacing.lock().await,
        };
        let (wtx, wrx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_outcomes(
            self.store.clone(),
            self.leaser.owner.clone(),
            self.generic.clone(),
            self.metrics.clone(),
            self.sender.reconcile_ms,
            wrx,
        ));
        let (ftx, mut frx) = mpsc::unbounded_channel();
        let limits = Limits {
            concurrency: self.concurrency,
            pair_interval_ms: self.sender.pair_interval_ms,
            pair_burst: self.sender.pair_burst,
            reconcile_ms: self.sender.reconcile_ms,
        };
        let mut lp = Loop { d: self, book: Book::new(&mut pacing, limits), writer: wtx, finished: ftx };
        let (feed_tx, mut feed_rx) = mpsc::unbounded_channel();
        let draining = stop.is_none();
        let mut stop = stop;
        let mut failure = None;
        loop {
            if stop.as_ref().is_some_and(|s| *s.borrow()) {
                break;
            }
            let now = now_ms();
            lp.book.wake_at = i64::MAX;
            if let Some(req) = lp.book.plan(now, || self.woken.swap(false, Ordering::AcqRel)) {
                let (store, leaser, tx) = (self.store.clone(), self.leaser.clone(), feed_tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(feed(store, leaser, req).await);
                });
            }
            lp.book.dispatch(now);
            lp.flush();
            if draining && lp.book.idle() {
                break;
            }
            let next = lp.book.next_wake(now, self.woken.load(Ordering::Acquire));
            let sleep = tokio::time::sleep(Duration::from_millis((next - now).clamp(0, POLL_MS) as u64));
            tokio::select! {
                Some(f) = frx.recv() => {
                    lp.finish(f);
                    while let Ok(f) = frx.try_recv() {
                        lp.finish(f);
                    }
                }
                Some(feed) = feed_rx.recv() => {
                    if let Err(e) = lp.take(feed) {
                        if draining {
                            failure = Some(e);
                            break;
                        }
                        tracing::warn!(error = %e, "send dispatcher: database error; trying again shortly");
                    }
                }
                _ = sleep => {}
                _ = self.wake.notified() => {}
                _ = changed(&mut stop) => {}
            }
        }
        // A feed still out: its leased sends are taken in, so they are released below.
        if lp.book.feeding {
            if let Some(feed) = feed_rx.recv().await {
                let _ = lp.take(feed);
            }
        }
        // Wind down: held sends go back to the queue at once; sends in flight finish and are recorded.
        lp.book.release_all();
        lp.flush();
        while lp.book.inflight > 0 {
            match frx.recv().await {
                Some(f) => lp.finish(f),
                None => break,
            }
        }
        let unmark = std::mem::take(&mut lp.book.unmark);
        drop(lp);
        let drained = writer.await.unwrap_or_default();
        if !unmark.is_empty() {
            let taken_back = async {
                let mut tx = self.store.begin_write().await?;
                super::mark_started_on(&mut tx, &unmark, -1).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(())
            };
            if let Err(e) = taken_back.await {
                tracing::warn!(error = %e, sends = unmark.len(), "could not take back the marks of unsent sends");
            }
        }
        // The numbers are free for another process as soon as our last sends are out of every pacing window.
        let free_at = now_ms() + super::pace::WINDOW_MS;
        if let Err(e) = self.leaser.release_claims(&self.store.pool, free_at).await {
            tracing::warn!(error = %e, "could not give up the send dispatcher's claims; they expire by themselves");
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(drained),
        }
    }
}

async fn changed(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(s) => {
            let _ = s.changed().await;
        }
        None => std::future::pending::<()>().await,
    }
}

impl jobs::Lane for Dispatcher {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn drain(&self) -> Pin<Box<dyn Future<Output = Result<Drained, StoreError>> + Send + '_>> {
        Box::pin(async move {
            self.woken.store(true, Ordering::Release);
            self.run_loop(None).await
        })
    }

    fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if let Err(e) = self.run_loop(Some(stop)).await {
                tracing::error!(error = %e, "send dispatcher stopped");
            }
        })
    }
}

/// One run of the loop: the in-memory state ([`Book`]) and the channels and tasks that carry out what it decides.
struct Loop<'a> {
    d: &'a Dispatcher,
    book: Book<'a>,
    writer: mpsc::UnboundedSender<Record>,
    finished: mpsc::UnboundedSender<Finished>,
}

impl Loop<'_> {
    /// Carries out what the book decided: outcomes to the writer, attempts in their own tasks.
    fn flush(&mut self) {
        for effect in std::mem::take(&mut self.book.out) {
            match effect {
                Effect::Record(r) => {
                    // The writer outlives the loop's senders; a closed channel means the loop is gone and the
                    // lease expires.
                    let _ = self.writer.send(r);
                }
                Effect::Start { phone, item, ctx } => {
                    self.d.metrics.jobs_running.inc();
                    let (sender, tx) = (self.d.sender.clone(), self.finished.clone());
                    tokio::spawn(async move {
                        let outcome = sender.attempt(&item.out, &ctx, item.job.attempts).await;
                        let _ = tx.send(Finished { phone, item, outcome });
                    });
                }
                Effect::ResentUnconfirmed { outbound } => {
                    tracing::warn!(outbound, "no status webhook for an unanswered send; sending it again");
                    self.d.metrics.sends_resent_unconfirmed.inc();
                }
            }
        }
    }

    fn finish(&mut self, f: Finished) {
        self.d.metrics.jobs_running.dec();
        self.book.finish(f, now_ms());
        self.flush();
    }

    fn take(&mut self, feed: Result<Feed, StoreError>) -> Result<(), StoreError> {
        let taken = self.book.take(feed, now_ms());
        self.flush();
        taken
    }
}

/// The settings the book's decisions need.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Attempts in flight at most.
    concurrency: usize,
    /// Pair rate: one message per customer per this many ms, in bursts of up to `pair_burst`.
    pair_interval_ms: i64,
    pair_burst: u32,
    /// How long an unanswered send waits for a status webhook ([`admit`]).
    reconcile_ms: i64,
}

/// What the loop carries out for the book.
enum Effect {
    /// Commit this outcome (the writer task).
    Record(Record),
    /// Start the attempt of this held send.
    Start { phone: i64, item: Item, ctx: Arc<Context> },
    /// A send whose earlier attempt went unanswered (and no status webhook came) goes again: count it.
    ResentUnconfirmed { outbound: i64 },
}

/// The dispatcher's in-memory state: numbers' contexts, the sends held per number, who is in flight, the
/// pacers. Pure: every method takes `now` (ms) and says what to do by pushing [`Effect`]s to `out`; no clock,
/// channel or task. Its decisions, in order of [`Book::dispatch`]:
///
/// | question                                   | answer                                                    |
/// |--------------------------------------------|-----------------------------------------------------------|
/// | WABA paused?                                | every held send back to the queue, after [`PAUSE_WAIT`]   |
/// | attempts in flight at `concurrency`?        | nothing starts                                            |
/// | number's slot not come ([`PhonePacer`])?    | wait for the slot (`wake_at`)                             |
/// | held send not marked started?               | it waits for its mark                                     |
/// | customer has a message in flight?           | the customer's later messages wait (others may go)        |
/// | customer's pair slot within [`LOOKAHEAD_MS`]? | wait for it (`wake_at`)                                 |
/// | customer's pair slot further off?           | the customer's held messages back to the queue until then |
/// | read mark?                                  | no pair rate and no order: goes in the number's next slot |
/// | attempt not final ([`Outcome::is_final`])?   | the customer's held messages back, after [`ORDER_WAIT`]   |
/// | Meta said 130429 (number over throughput)?  | the number's next slot at least 1 s away                  |
/// | Meta said 131056 (pair rate)?               | the customer's next message not before Meta's `after`     |
struct Book<'a> {
    pacing: &'a mut Pacing,
    limits: Limits,
    /// What the loop must carry out.
    out: Vec<Effect>,
    ctx: HashMap<i64, Arc<Context>>,
    lanes: HashMap<i64, PhoneLane>,
    /// Outbound ids held or in flight here.
    known: HashSet<i64>,
    /// Outbound ids whose send ended here (committed or about to be), with when: a later message to the same
    /// customer need not wait for the commit.
    settled: HashMap<i64, i64>,
    inflight: usize,
    last_ctx: i64,
    last_wake: i64,
    /// The earliest time something held may go (a slot, a pair-rate wait).
    wake_at: i64,
    /// A feed is out.
    feeding: bool,
    /// After a database error, no feed before this.
    retry_at: i64,
    /// Which number goes first in [`Loop::dispatch`] (turns).
    turn: usize,
    /// Marks to take back with the next feed.
    unmark: Vec<i64>,
}

/// How many sends to lease for a number now, if any: it is not paused and at most half of its
/// [`LOOKAHEAD_MS`] of sends (at least 8) is held, so it is topped up to that.
fn lease_room(l: &PhoneLane, ctx: &Context) -> Option<usize> {
    let target = ((ctx.mps as i64 * LOOKAHEAD_MS / 1000) as usize).max(8);
    (ctx.paused.is_none() && l.held.len() <= target / 2).then(|| target - l.held.len())
}

/// How many held sends of a number to mark started now, if any: it is not paused, it holds unmarked sends, and
/// at most half of its [`MARK_AHEAD_MS`] of slots (at least 2) have marked sends, so it is topped up to that.
fn marks_wanted(l: &PhoneLane, ctx: &Context) -> Option<usize> {
    let want = ((ctx.mps as u64 * MARK_AHEAD_MS as u64).div_ceil(1000) as usize).max(2);
    (ctx.paused.is_none() && l.marked < l.held.len() && l.marked * 2 <= want).then(|| want - l.marked)
}

impl<'a> Book<'a> {
    fn new(pacing: &'a mut Pacing, limits: Limits) -> Self {
        Book {
            pacing,
            limits,
            out: Vec::new(),
            ctx: HashMap::new(),
            lanes: HashMap::new(),
            known: HashSet::new(),
            settled: HashMap::new(),
            inflight: 0,
            last_ctx: 0,
            last_wake: 0,
            wake_at: i64::MAX,
            feeding: false,
            retry_at: 0,
            turn: 0,
            unmark: Vec::new(),
        }
    }

    /// What the feeder should do next, if anything and if it is not busy: reload the contexts (every
    /// [`CONTEXT_MS`], or after a wake-up), look when idle numbers' next sends are due, and lease for the numbers
    /// that have room.
    /// `take_wake` says (once) whether new sends were committed since it was last asked.
    fn plan(&mut self, now: i64, take_wake: impl FnOnce() -> bool) -> Option<FeedRequest> {
        if self.feeding || now < self.retry_at {
            return None;
        }
        let woken = now - self.last_wake >= WAKE_MS && take_wake();
        if woken {
            self.last_wake = now;
            for l in self.lanes.values_mut() {
                if l.held.is_empty() && l.next_lease.is_some_and(|t| t > now) {
                    l.next_lease = None;
                }
            }
        }
        let refresh = woken || now - self.last_ctx >= CONTEXT_MS;
        let look: Vec<i64> = self.lanes.iter().filter(|(_, l)| l.next_lease.is_none()).map(|(p, _)| *p).collect();
        let lease: Vec<(i64, usize)> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.next_lease.is_some_and(|t| t <= now))
            .filter_map(|(phone, l)| Some((*phone, lease_room(l, self.ctx.get(phone)?)?)))
            .collect();
        let mark = self.marks_due();
        let unmark = std::mem::take(&mut self.unmark);
        if !refresh && look.is_empty() && lease.is_empty() && mark.is_empty() && unmark.is_empty() {
            return None;
        }
        let renew: Vec<i64> = match refresh {
            true => self
                .lanes
                .iter()
                .filter(|(_, l)| !l.held.is_empty() || !l.inflight.is_empty())
                .map(|(p, _)| *p)
                .collect(),
            false => Vec::new(),
        };
        self.feeding = true;
        Some(FeedRequest {
            now,
            refresh,
            look,
            lease,
            renew,
            mark,
            unmark,
            previous: refresh.then(|| self.ctx.clone()),
        })
    }

    /// Per number, the held sends to mark started now: enough that the next [`MARK_AHEAD_MS`] of the number's
    /// slots have marked sends, in queue order.
    fn marks_due(&self) -> Vec<(i64, Vec<i64>)> {
        let mut out = Vec::new();
        for (phone, lane) in &self.lanes {
            let Some(n) = self.ctx.get(phone).and_then(|c| marks_wanted(lane, c)) else { continue };
            let ids: Vec<i64> = lane.held.iter().filter(|it| !it.marked).take(n).map(|it| it.out.id).collect();
            if !ids.is_empty() {
                out.push((*phone, ids));
            }
        }
        out
    }

    /// Takes in what the feeder brought: contexts, when numbers' next sends are due, and leased sends.
    fn take(&mut self, feed: Result<Feed, StoreError>, now: i64) -> Result<(), StoreError> {
        self.feeding = false;
        let feed = match feed {
            Ok(f) => f,
            Err(e) => {
                self.retry_at = now + POLL_MS;
                return Err(e);
            }
        };
        let now = feed.now;
        if let Some(ctx) = feed.ctx {
            self.ctx = ctx;
            self.last_ctx = now;
            for id in self.ctx.keys() {
                self.lanes.entry(*id).or_default();
            }
            self.lanes.retain(|id, l| self.ctx.contains_key(id) || !l.held.is_empty() || !l.inflight.is_empty());
            // The writer commits within milliseconds; ten seconds is plenty.
            self.settled.retain(|_, t| now - *t < 10_000);
        }
        for (phone, n, items) in feed.leased {
            let full = items.len() == n;
            for (job, row) in items {
                if row.as_ref().is_some_and(|(out, _)| self.known.contains(&out.id)) {
                    // Held or in flight here already (its lease was not renewed in time): never a second copy.
                    tracing::warn!(job = job.id, "a send held here was leased again; keeping the one copy");
                    continue;
                }
                self.hold(phone, job, row, now);
            }
            // A full lease: there may be more; lease again when half of it is sent.
            if full {
                let lane = self.lanes.entry(phone).or_default();
                lane.next_lease = Some(now);
                lane.due = true;
            }
        }
        for (phone, ids) in feed.marked {
            let ids: HashSet<i64> = ids.into_iter().collect();
            let mut found = 0;
            if let Some(lane) = self.lanes.get_mut(&phone) {
                for it in lane.held.iter_mut().filter(|it| ids.contains(&it.out.id)) {
                    it.marked = true;
                    found += 1;
                }
                lane.marked += found;
            }
            if found < ids.len() {
                // Released while their mark was on its way: take the marks back with the next feed.
                let held: HashSet<i64> =
                    self.lanes.get(&phone).map(|l| l.held.iter().map(|it| it.out.id).collect()).unwrap_or_default();
                self.unmark.extend(ids.iter().filter(|id| !held.contains(id)));
            }
        }
        for phone in feed.elsewhere {
            // Another process paces this number: look again later; a drain is not waiting for it.
            let lane = self.lanes.entry(phone).or_default();
            lane.next_lease = Some(now + POLL_MS);
            lane.due = false;
        }
        for (phone, next) in feed.looked {
            let lane = self.lanes.entry(phone).or_default();
            lane.due = next.is_some_and(|t| t <= now);
            lane.next_lease = Some(next.unwrap_or(i64::MAX).min(now + POLL_MS));
        }
        Ok(())
    }

    /// Holds a leased send, or records why it does not go now.
    fn hold(&mut self, phone: i64, job: Job, row: Option<(Outbound, Option<i64>)>, now: i64) {
        let Some((out, blocker)) = row else { return };
        let out = Arc::new(out);
        if let Some(outcome) = admit(&out, now, self.limits.reconcile_ms) {
            self.record(job, out, outcome);
            return;
        }
        if let Some(b) = blocker {
            if !self.known.contains(&b) && !self.settled.contains_key(&b) {
                let outcome = Outcome::Wait {
                    message: "an earlier message to this customer is still queued".into(),
                    after: ORDER_WAIT,
                    unknown: false,
                    unstart: false,
                };
                self.record(job, out, outcome);
                return;
            }
        }
        if out.state == SendState::Unknown {
            self.out.push(Effect::ResentUnconfirmed { outbound: out.id });
        }
        self.known.insert(out.id);
        self.lanes.entry(phone).or_default().held.push_back(Item { job, out, marked: false });
    }

    fn record(&mut self, job: Job, out: Arc<Outbound>, outcome: Outcome) {
        self.out.push(Effect::Record(Record { job, out, outcome }));
    }

    /// Sends every held send whose slot has come, as the pacers allow.
    fn dispatch(&mut self, now: i64) {
        let mut phones: Vec<i64> = self
            .lanes
            .iter()
            .filter(|(_, l)| !l.held.is_empty())
            .filter(|(_, l)| {
                // Not before the number's next slot (known from the pacer's last answer).
                if l.slot_at > now + SLACK_MS {
                    self.wake_at = self.wake_at.min(l.slot_at);
                    return false;
                }
                true
            })
            .map(|(p, _)| *p)
            .collect();
        // When the sends in flight are at the limit, no number is always first.
        phones.sort_unstable();
        self.turn = self.turn.wrapping_add(1);
        if !phones.is_empty() {
            let k = self.turn % phones.len();
            phones.rotate_left(k);
        }
        for phone in phones {
            let Some(ctx) = self.ctx.get(&phone).cloned() else { continue };
            if let Some(reason) = &ctx.paused {
                let message = format!("sends of this WABA are paused: {reason}");
                self.release(phone, |_| true, &message, PAUSE_WAIT);
                continue;
            }
            while self.inflight < self.limits.concurrency {
                let Some(i) = self.pick(phone, now) else { break };
                match self.pacing.phones.ask(phone, ctx.mps, now) {
                    Verdict::Go => self.start(phone, i, &ctx, now),
                    Verdict::WaitUntil(t) => {
                        self.wake_at = self.wake_at.min(t);
                        if let Some(l) = self.lanes.get_mut(&phone) {
                            l.slot_at = t;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// The first held send of `phone` that may go now: its customer has nothing in flight and an earlier held
    /// message, and is within the pair rate. Customers whose pair slot is far off go back to the queue.
    fn pick(&mut self, phone: i64, now: i64) -> Option<usize> {
        let (interval, burst) = (self.limits.pair_interval_ms, self.limits.pair_burst);
        let lane = self.lanes.get(&phone)?;
        // The usual case: the first held send may go.
        let first = lane.held.front()?;
        if first.marked
            && (first.out.is_read_mark()
                || (!lane.inflight.contains_key(&first.out.recipient)
                    && self.pacing.pairs.peek(phone, &first.out.recipient, interval, burst, now) == Verdict::Go))
        {
            return Some(0);
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut far: Vec<(String, i64)> = Vec::new();
        let mut pick = None;
        for (i, item) in lane.held.iter().enumerate().take(SCAN) {
            if item.out.is_read_mark() {
                // No pair rate, no order: it goes in the number's next slot once marked started.
                if item.marked {
                    pick = Some(i);
                    break;
                }
                continue;
            }
            let to = item.out.recipient.as_str();
            if !seen.insert(to) || lane.inflight.contains_key(to) || !item.marked {
                continue;
            }
            match self.pacing.pairs.peek(phone, to, interval, burst, now) {
                Verdict::Go => {
                    pick = Some(i);
                    break;
                }
                Verdict::WaitUntil(t) if t - now > LOOKAHEAD_MS => far.push((to.to_string(), t)),
                Verdict::WaitUntil(t) => self.wake_at = self.wake_at.min(t),
            }
        }
        let pick_id = pick.and_then(|i| lane.held.get(i)).map(|it| it.out.id);
        for (to, t) in far {
            let after = Duration::from_millis((t - now).max(1) as u64);
            self.release(
                phone,
                |it| it.out.recipient == to && !it.out.is_read_mark(),
                "pair rate: paced to Meta's limit for one customer",
                after,
            );
        }
        // Releasing may have moved the pick.
        let lane = self.lanes.get(&phone)?;
        pick_id.and_then(|id| lane.held.iter().position(|it| it.out.id == id))
    }

    /// Starts the attempt of held send `i` of `phone` (the loop runs it in its own task).
    fn start(&mut self, phone: i64, i: usize, ctx: &Arc<Context>, now: i64) {
        let (interval, burst) = (self.limits.pair_interval_ms, self.limits.pair_burst);
        let Some(lane) = self.lanes.get_mut(&phone) else { return };
        let Some(item) = lane.held.remove(i) else { return };
        lane.marked -= usize::from(item.marked);
        // A read mark takes a slot of the number's throughput, but is no message to the customer: no pair rate,
        // and the customer's messages do not wait for it.
        if !item.out.is_read_mark() {
            self.pacing.pairs.ask(phone, &item.out.recipient, interval, burst, now);
            *lane.inflight.entry(item.out.recipient.clone()).or_default() += 1;
        }
        self.inflight += 1;
        self.out.push(Effect::Start { phone, item, ctx: ctx.clone() });
    }

    /// An attempt came back: the pacers learn from Meta's refusals, the customer's next message may go (or, if
    /// this one is not over, waits in the queue behind it), and the outcome goes to the writer.
    fn finish(&mut self, f: Finished, now: i64) {
        let Finished { phone, item, outcome } = f;
        self.inflight -= 1;
        self.known.remove(&item.out.id);
        let to = item.out.recipient.clone();
        let message = !item.out.is_read_mark();
        if let (true, Some(lane)) = (message, self.lanes.get_mut(&phone)) {
            if let Some(n) = lane.inflight.get_mut(&to) {
                *n -= 1;
                if *n == 0 {
                    lane.inflight.remove(&to);
                }
            }
        }
        let (interval, burst) = (self.limits.pair_interval_ms, self.limits.pair_burst);
        match &outcome {
            Outcome::Retry { code: Some(130429), .. } => {
                self.pacing.phones.back_off(phone, now, 1000);
                if let Some(l) = self.lanes.get_mut(&phone) {
                    l.slot_at = 0;
                }
            }
            Outcome::Retry { code: Some(131056), after, .. } if message => {
                let until = now + after.map(|d| d.as_millis() as i64).unwrap_or(interval);
                self.pacing.pairs.hold(phone, &to, until, interval, burst);
            }
            Outcome::Paused { reason, waba_id, .. } => {
                for ctx in self.ctx.values_mut().filter(|c| c.waba_id == *waba_id) {
                    let mut c = (**ctx).clone();
                    c.paused = Some(reason.clone());
                    *ctx = Arc::new(c);
                }
            }
            _ => {}
        }
        if outcome.is_final() {
            self.settled.insert(item.out.id, now);
        } else if message {
            self.release(
                phone,
                |it| it.out.recipient == to && !it.out.is_read_mark(),
                "an earlier message to this customer is still queued",
                ORDER_WAIT,
            );
        }
        self.record(item.job, item.out, outcome);
    }

    /// Puts held sends of `phone` that match back in the queue, due after `after`, without spending an attempt.
    fn release(&mut self, phone: i64, matches: impl Fn(&Item) -> bool, message: &str, after: Duration) {
        let Some(lane) = self.lanes.get_mut(&phone) else { return };
        let (back, keep): (VecDeque<Item>, VecDeque<Item>) = lane.held.drain(..).partition(|it| matches(it));
        lane.held = keep;
        lane.marked -= back.iter().filter(|it| it.marked).count();
        for it in back {
            self.known.remove(&it.out.id);
            let outcome = Outcome::Wait { message: message.to_string(), after, unknown: false, unstart: it.marked };
            self.record(it.job, it.out, outcome);
        }
    }

    fn release_all(&mut self) {
        let phones: Vec<i64> = self.lanes.keys().copied().collect();
        for phone in phones {
            self.release(phone, |_| true, "returned to the queue: the dispatcher stopped", Duration::ZERO);
        }
    }

    /// Nothing due (but sends of paused WABAs), held or in flight.
    fn idle(&self) -> bool {
        let paused = |phone: &i64| self.ctx.get(phone).is_none_or(|c| c.paused.is_some());
        self.last_ctx > 0
            && !self.feeding
            && self.inflight == 0
            && self.lanes.iter().all(|(p, l)| l.held.is_empty() && l.next_lease.is_some() && (!l.due || paused(p)))
    }

    /// When the loop must look again (ms).
    /// `woken`: new sends were committed and not looked at yet.
    fn next_wake(&self, now: i64, woken: bool) -> i64 {
        let mut t = now + POLL_MS;
        if self.inflight < self.limits.concurrency {
            t = t.min(self.wake_at);
        }
        if woken {
            t = t.min(self.last_wake + WAKE_MS);
        }
        if self.feeding {
            return t; // the feed's arrival wakes the loop
        }
        if self.needs_marks() && now >= self.retry_at {
            return now;
        }
        for (phone, l) in &self.lanes {
            if self.ctx.get(phone).and_then(|c| lease_room(l, c)).is_some() {
                t = t.min(l.next_lease.unwrap_or(now));
            }
        }
        t.min(self.last_ctx.saturating_add(CONTEXT_MS)).max(self.retry_at)
    }

    /// Some number is running out of marked sends.
    fn needs_marks(&self) -> bool {
        self.lanes.iter().any(|(phone, l)| self.ctx.get(phone).and_then(|c| marks_wanted(l, c)).is_some())
    }
}

/// What the loop asks the feeder for.
struct FeedRequest {
    now: i64,
    refresh: bool,
    /// Numbers whose next due send is unknown.
    look: Vec<i64>,
    /// Numbers to lease for, and how many.
    lease: Vec<(i64, usize)>,
    /// Numbers whose claim to renew (sends held or in flight here).
    renew: Vec<i64>,
    /// Held sends to mark started, per number.
    mark: Vec<(i64, Vec<i64>)>,
    /// Sends marked started that went back to the queue unsent before their mark was known: take it back.
    unmark: Vec<i64>,
    /// The contexts now (tokens unchanged are not opened again), when `refresh`.
    previous: Option<HashMap<i64, Arc<Context>>>,
}

/// What the feeder brings back.
struct Feed {
    now: i64,
    ctx: Option<HashMap<i64, Arc<Context>>>,
    /// When each looked-at number's next send is due (numbers whose lease came back short are looked at too).
    looked: Vec<(i64, Option<i64>)>,
    /// Per number: how many were asked for, and the leased jobs with their rows and blockers.
    leased: Vec<(i64, usize, LeasedSends)>,
    /// Numbers another process paces now (it holds their claim).
    elsewhere: Vec<i64>,
    /// Sends marked started, per number.
    marked: Vec<(i64, Vec<i64>)>,
}

type LeasedSends = Vec<(Job, Option<(Outbound, Option<i64>)>)>;

/// The feeder: all the loop's database work, in its own task so sending never waits for the database.
async fn feed(store: Store, leaser: LaneLeaser, req: FeedRequest) -> Result<Feed, StoreError> {
    let FeedRequest { now, refresh, mut look, lease, renew, mark, unmark, previous } = req;
    let ctx = match (refresh, previous) {
        (true, Some(prev)) => Some(sender::load_contexts(&store, &prev).await?),
        (true, None) => Some(sender::load_contexts(&store, &HashMap::new()).await?),
        _ => None,
    };
    let mut leased = Vec::with_capacity(lease.len());
    let mut elsewhere = Vec::new();
    if !lease.is_empty() || !renew.is_empty() || !mark.is_empty() || !unmark.is_empty() {
        let mut tx = store.begin_write().await?;
        leaser.renew(&mut tx, &renew, now, now + CLAIM_MS).await?;
        let ids: Vec<i64> = mark.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
        super::mark_started_on(&mut tx, &ids, 1).await?;
        super::mark_started_on(&mut tx, &unmark, -1).await?;
        for (phone, n) in &lease {
            if leaser.claim(&mut *tx, *phone, now, now + CLAIM_MS).await? {
                leased.push((*phone, *n, leaser.lease(&mut *tx, Some(*phone), *n, now).await?));
            } else {
                elsewhere.push(*phone);
            }
        }
        tx.commit().await?;
    }
    let ids: Vec<i64> = leased.iter().flat_map(|(_, _, jobs)| jobs.iter().filter_map(outbound_id)).collect();
    let mut rows: HashMap<i64, (Outbound, Option<i64>)> =
        super::get_many_with_blocker(&store, &ids).await?.into_iter().map(|(o, b)| (o.id, (o, b))).collect();
    let mut out = Vec::with_capacity(leased.len());
    for (phone, n, jobs) in leased {
        if jobs.len() < n {
            look.push(phone);
        }
        let mut items = Vec::with_capacity(jobs.len());
        for job in jobs {
            let row = outbound_id(&job).and_then(|id| rows.remove(&id));
            if row.is_none() {
                let reason = format!("payload {:?} names no existing outbound send", job.payload);
                jobs::record_on(&store.pool, &leaser.owner, &job, Err(JobError::Permanent(reason)), now).await?;
                continue;
            }
            items.push((job, row));
        }
        out.push((phone, n, items));
    }
    // One query for all of them: a wake-up looks at every idle number, and there may be hundreds.
    let due = jobs::lanes_next_due(&store.pool, &look).await?;
    let looked = look.into_iter().map(|phone| (phone, due.get(&phone).copied())).collect();
    Ok(Feed { now, ctx, looked, leased: out, elsewhere, marked: mark })
}

/// The send a leased `wa.send` job names, if its row parses as one.
fn outbound_id(job: &Job) -> Option<i64> {
    match Task::parse(&job.kind, &job.payload) {
        Ok(Task::WaSend(WaSend { outbound_id })) => Some(outbound_id),
        _ => None,
    }
}

/// The writer task: commits outcomes in batches (everything that finished since the last commit, up to
/// [`WRITE_BATCH`]) until the loop is gone. A batch that fails is committed one outcome at a time, so one bad
/// row holds back only itself; an outcome that cannot be committed leaves its job leased, and the expired
/// lease makes it reconciled (never blindly resent).
async fn write_outcomes(
    store: Store,
    owner: String,
    generic: Arc<Notify>,
    metrics: Arc<Metrics>,
    reconcile_ms: i64,
    mut rx: mpsc::UnboundedReceiver<Record>,
) -> Drained {
    let mut drained = Drained::default();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let outcomes = match commit(&store, &owner, &batch, reconcile_ms).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, sends = batch.len(), "could not commit send outcomes together; one by one");
                let mut all = Vec::new();
                for r in &batch {
                    match commit(&store, &owner, std::slice::from_ref(r), reconcile_ms).await {
                        Ok(o) => all.extend(o),
                        Err(e) => {
                            tracing::error!(outbound = r.out.id, error = %e, "could not record a send's outcome")
                        }
                    }
                }
                all
            }
        };
        for o in &outcomes {
            drained.count(*o);
            metrics
                .jobs_finished
                .get_or_create(&KindLabels { kind: Kind::WaSend.as_str().into(), outcome: o.label().into() })
                .inc();
        }
        if batch.iter().any(|r| r.out.origin.reports()) {
            generic.notify_waiters();
            generic.notify_one();
        }
    }
    drained
}

async fn commit(
    store: &Store,
    owner: &str,
    batch: &[Record],
    reconcile_ms: i64,
) -> Result<Vec<jobs::Outcome>, StoreError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    // The common case, accepted sends, in a few statements for the whole batch; the rest one by one.
    let accepted: Vec<&Record> = batch.iter().filter(|r| matches!(r.outcome, Outcome::Accepted { .. })).collect();
    for chunk in accepted.chunks(ACCEPTED_CHUNK) {
        record_accepted(&mut tx, owner, chunk, now).await?;
        outcomes.extend(chunk.iter().map(|_| jobs::Outcome::Done));
    }
    for r in batch.iter().filter(|r| !matches!(r.outcome, Outcome::Accepted { .. })) {
        outcomes.push(sender::record_on(&mut tx, owner, &r.job, &r.out, &r.outcome, reconcile_ms, now).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Accepted sends per statement (two binds each, within every database's limit).
const ACCEPTED_CHUNK: usize = 400;

/// What [`sender::record_on`] does for [`Outcome::Accepted`], for many sends at once: the rows become
/// `accepted` with their wamids (not over a webhook's confirmation or a failure), reports are queued for the
/// requesters that want one, and the jobs end.
async fn record_accepted(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &str,
    chunk: &[&Record],
    now: i64,
) -> Result<(), StoreError> {
    let accepted: Vec<(i64, &str)> = chunk
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Accepted { wamid } => (r.out.id, wamid.as_str()),
            _ => (r.out.id, ""),
        })
        .collect();
    store::outbound::accept_many_on(tx, &accepted, now).await?;
    for r in chunk {
        super::report_on(&mut **tx, r.out.origin, r.out.id, "accepted", None).await?;
    }
    let ids: Vec<i64> = chunk.iter().map(|r| r.job.id).collect();
    store::jobs::finish_many_on(&mut **tx, owner, &ids, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The book's decisions on a clock that only moves when a test says (ms since an arbitrary origin).
    use super::*;
    use serde_json::Value;

    const PHONE: i64 = 1;
    const T0: i64 = 1_000_000;

    fn limits() -> Limits {
        Limits { concurrency: 16, pair_interval_ms: 0, pair_burst: 1, reconcile_ms: 60_000 }
    }

    fn outbound(id: i64, to: &str, origin: &str) -> Outbound {
        Outbound {
            id,
            phone_id: PHONE,
            recipient: to.into(),
            origin: super::super::Origin::parse(origin).expect("an origin"),
            origin_ref: Value::Null,
            request: Value::Null,
            state: SendState::Queued,
            wamid: None,
            status: None,
            error_code: None,
            error_text: None,
            attempts: 0,
            resent_unconfirmed: 0,
            started: 0,
            unknown_since: None,
            api_key_id: None,
            created_at: String::new(),
            updated_at: String::new(),
            updated_at_ms: 0,
        }
    }

    fn job(id: i64) -> Job {
        Job {
            id,
            kind: Kind::WaSend.as_str().into(),
            payload: Task::WaSend(WaSend { outbound_id: id }).payload(),
            attempts: 1,
            max_attempts: 10,
        }
    }

    fn book(pacing: &mut Pacing, mps: u32, limits: Limits) -> Book<'_> {
        let mut b = Book::new(pacing, limits);
        b.ctx.insert(PHONE, Arc::new(Context::for_tests(mps, 7)));
        b.last_ctx = T0;
        b
    }

    /// Holds a send and marks it started (as the feeder would).
    fn hold(b: &mut Book<'_>, id: i64, to: &str, origin: &str, now: i64) {
        b.hold(PHONE, job(id), Some((outbound(id, to, origin), None)), now);
        let lane = b.lanes.get_mut(&PHONE).unwrap();
        let it = lane.held.back_mut().unwrap();
        assert_eq!(it.out.id, id, "held");
        it.marked = true;
        lane.marked += 1;
    }

    /// The sends started and the outcomes recorded since the last look.
    fn effects(b: &mut Book<'_>) -> (Vec<Item>, Vec<(i64, Outcome)>) {
        let (mut started, mut recorded) = (Vec::new(), Vec::new());
        for e in std::mem::take(&mut b.out) {
            match e {
                Effect::Start { item, .. } => started.push(item),
                Effect::Record(r) => recorded.push((r.out.id, r.outcome)),
                Effect::ResentUnconfirmed { .. } => {}
            }
        }
        (started, recorded)
    }

    fn ids(items: &[Item]) -> Vec<i64> {
        items.iter().map(|it| it.out.id).collect()
    }

    fn finish(b: &mut Book<'_>, item: Item, outcome: Outcome, now: i64) {
        b.finish(Finished { phone: PHONE, item, outcome }, now);
    }

    /// Runs the book from `now` until nothing more starts before `until`, jumping to each wake-up.
    fn run_until(b: &mut Book<'_>, mut now: i64, until: i64) -> Vec<(i64, i64)> {
        let mut starts = Vec::new();
        while now < until {
            b.wake_at = i64::MAX;
            b.dispatch(now);
            let (started, _) = effects(b);
            starts.extend(started.iter().map(|it| (now, it.out.id)));
            if b.wake_at == i64::MAX {
                break;
            }
            now = b.wake_at.max(now + 1);
        }
        starts
    }

    #[test]
    fn a_number_sends_in_its_slots_and_never_more_than_mps_in_a_window() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 2, limits());
        for id in 1..=5 {
            hold(&mut b, id, &format!("c{id}"), "api", T0);
        }
        let starts = run_until(&mut b, T0, T0 + 10_000);
        let times: Vec<i64> = starts.iter().map(|(t, _)| t - T0).collect();
        assert_eq!(times, [0, 460, 1020, 1480, 2040], "510 ms apart, then held to 2 per 1,020 ms");
        assert_eq!(starts.iter().map(|(_, id)| *id).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "in queue order");
        for (i, (t, _)) in starts.iter().enumerate() {
            let in_window = starts.iter().skip(i).take_while(|(u, _)| *u < t + super::super::pace::WINDOW_MS).count();
            assert!(in_window <= 2, "{starts:?}");
        }
    }

    #[test]
    fn sends_wait_for_their_mark_and_the_concurrency_limit() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, Limits { concurrency: 1, ..limits() });
        b.hold(PHONE, job(1), Some((outbound(1, "a", "api"), None)), T0);
        b.dispatch(T0);
        assert!(effects(&mut b).0.is_empty(), "not marked started: it may not go");
        assert_eq!(b.marks_due(), [(PHONE, vec![1])]);
        let lane = b.lanes.get_mut(&PHONE).unwrap();
        lane.held[0].marked = true;
        lane.marked = 1;
        hold(&mut b, 2, "b", "api", T0);
        b.dispatch(T0);
        let (started, _) = effects(&mut b);
        assert_eq!(ids(&started), [1]);
        b.dispatch(T0 + 100);
        assert!(effects(&mut b).0.is_empty(), "one attempt in flight at most");
        finish(&mut b, started.into_iter().next().unwrap(), Outcome::Accepted { wamid: "w".into() }, T0 + 100);
        b.dispatch(T0 + 100);
        assert_eq!(ids(&effects(&mut b).0), [2]);
    }

    #[test]
    fn a_customers_messages_go_one_at_a_time_in_order() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, limits());
        hold(&mut b, 1, "a", "crm", T0);
        hold(&mut b, 2, "a", "crm", T0);
        hold(&mut b, 3, "b", "crm", T0);
        let starts = run_until(&mut b, T0, T0 + 1000);
        assert_eq!(starts.iter().map(|(_, id)| *id).collect::<Vec<_>>(), [1, 3], "a's second waits; b goes");
        // a's first message is not over (Meta asked to retry): its second goes back behind it.
        let mut pacing2 = Pacing::default();
        let mut b2 = book(&mut pacing2, 1000, limits());
        hold(&mut b2, 1, "a", "crm", T0);
        hold(&mut b2, 2, "a", "crm", T0);
        b2.dispatch(T0);
        let (started, _) = effects(&mut b2);
        let retry = Outcome::Retry { code: None, reason: "5xx".into(), after: None };
        finish(&mut b2, started.into_iter().next().unwrap(), retry.clone(), T0 + 50);
        let (started, recorded) = effects(&mut b2);
        assert!(started.is_empty());
        let waits = Outcome::Wait {
            message: "an earlier message to this customer is still queued".into(),
            after: ORDER_WAIT,
            unknown: false,
            unstart: true,
        };
        assert_eq!(recorded, [(2, waits), (1, retry)]);
        // Over: the next one goes in the next slot.
        hold(&mut b2, 4, "a", "crm", T0 + 60);
        b2.dispatch(T0 + 60);
        let (started, _) = effects(&mut b2);
        finish(&mut b2, started.into_iter().next().unwrap(), Outcome::Accepted { wamid: "w".into() }, T0 + 70);
        hold(&mut b2, 5, "a", "crm", T0 + 70);
        assert_eq!(run_until(&mut b2, T0 + 70, T0 + 1000).iter().map(|(_, id)| *id).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn the_pair_rate_paces_a_customer_and_far_slots_go_back_to_the_queue() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, Limits { pair_interval_ms: 600, ..limits() });
        hold(&mut b, 1, "a", "api", T0);
        b.dispatch(T0);
        let (started, _) = effects(&mut b);
        finish(&mut b, started.into_iter().next().unwrap(), Outcome::Accepted { wamid: "w".into() }, T0 + 10);
        hold(&mut b, 2, "a", "api", T0 + 10);
        let starts = run_until(&mut b, T0 + 10, T0 + 5000);
        assert_eq!(starts, [(T0 + 600, 2)], "the customer's next message waits for its pair slot");

        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, Limits { pair_interval_ms: 6000, ..limits() });
        hold(&mut b, 1, "a", "api", T0);
        b.dispatch(T0);
        let (started, _) = effects(&mut b);
        finish(&mut b, started.into_iter().next().unwrap(), Outcome::Accepted { wamid: "w".into() }, T0 + 10);
        hold(&mut b, 2, "a", "api", T0 + 10);
        b.dispatch(T0 + 10);
        let (started, recorded) = effects(&mut b);
        assert!(started.is_empty());
        let expected = Outcome::Wait {
            message: "pair rate: paced to Meta's limit for one customer".into(),
            after: Duration::from_millis(5990),
            unknown: false,
            unstart: true,
        };
        assert_eq!(recorded.last(), Some(&(2, expected)), "more than LOOKAHEAD_MS away: back to the queue");
    }

    #[test]
    fn read_marks_skip_the_pair_rate_and_the_customers_order() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, Limits { pair_interval_ms: 6000, ..limits() });
        hold(&mut b, 1, "a", "api", T0);
        hold(&mut b, 2, "a", "read", T0);
        let starts = run_until(&mut b, T0, T0 + 500);
        assert_eq!(starts.iter().map(|(_, id)| *id).collect::<Vec<_>>(), [1, 2], "the mark goes while 1 is in flight");
    }

    #[test]
    fn meta_refusals_slow_the_number_or_the_customer() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, limits());
        hold(&mut b, 1, "a", "api", T0);
        b.dispatch(T0);
        let (started, _) = effects(&mut b);
        let over = Outcome::Retry { code: Some(130429), reason: "throughput".into(), after: None };
        finish(&mut b, started.into_iter().next().unwrap(), over, T0 + 20);
        hold(&mut b, 2, "b", "api", T0 + 20);
        let starts = run_until(&mut b, T0 + 20, T0 + 5000);
        assert_eq!(starts, [(T0 + 1020, 2)], "130429: the number's next slot a second later");

        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, limits());
        hold(&mut b, 1, "a", "api", T0);
        b.dispatch(T0);
        let (started, _) = effects(&mut b);
        let pair =
            Outcome::Retry { code: Some(131056), reason: "pair rate".into(), after: Some(Duration::from_millis(800)) };
        finish(&mut b, started.into_iter().next().unwrap(), pair, T0 + 20);
        hold(&mut b, 2, "a", "api", T0 + 20);
        hold(&mut b, 3, "b", "api", T0 + 20);
        let starts = run_until(&mut b, T0 + 20, T0 + 5000);
        assert_eq!(starts.first(), Some(&(T0 + 20, 3)), "other customers go on");
        assert_eq!(starts.get(1), Some(&(T0 + 820, 2)), "131056: not before Meta's retry-after");
    }

    #[test]
    fn a_paused_wabas_held_sends_go_back_to_the_queue() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, limits());
        hold(&mut b, 1, "a", "api", T0);
        let mut ctx = Context::for_tests(1000, 7);
        ctx.paused = Some("token refused".into());
        b.ctx.insert(PHONE, Arc::new(ctx));
        b.dispatch(T0);
        let (started, recorded) = effects(&mut b);
        assert!(started.is_empty());
        assert!(matches!(&recorded[..], [(1, Outcome::Wait { after, unstart: true, .. })] if *after == PAUSE_WAIT));
        assert!(b.lanes[&PHONE].held.is_empty());
    }

    #[test]
    fn leased_sends_are_held_or_answered_at_once() {
        let mut pacing = Pacing::default();
        let mut b = book(&mut pacing, 1000, limits());
        let mut done = outbound(1, "a", "api");
        done.state = SendState::Accepted;
        b.hold(PHONE, job(1), Some((done, None)), T0);
        b.hold(PHONE, job(2), Some((outbound(2, "a", "api"), Some(99))), T0);
        b.settled.insert(98, T0);
        b.hold(PHONE, job(3), Some((outbound(3, "b", "api"), Some(98))), T0);
        let mut unanswered = outbound(4, "c", "api");
        unanswered.state = SendState::Unknown;
        unanswered.unknown_since = Some(T0 - 60_000);
        b.hold(PHONE, job(4), Some((unanswered, None)), T0);
        let effects_now: Vec<&Effect> = b.out.iter().collect();
        assert!(matches!(effects_now.last(), Some(Effect::ResentUnconfirmed { outbound: 4 })));
        let (_, recorded) = effects(&mut b);
        assert_eq!(recorded[0], (1, Outcome::Settled));
        assert!(
            matches!(&recorded[1], (2, Outcome::Wait { after, .. }) if *after == ORDER_WAIT),
            "an earlier message (99) is still queued elsewhere: {recorded:?}"
        );
        assert_eq!(recorded.len(), 2);
        assert_eq!(b.lanes[&PHONE].held.iter().map(|it| it.out.id).collect::<Vec<_>>(), [3, 4]);
    }
}
