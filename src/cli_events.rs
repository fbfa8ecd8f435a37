//! The CLI's history (`wabridge messages|contacts|conversations list`) and event webhook commands
//! (`wabridge events …`): readable tables by default, `--json` for the API's JSON. Same code as the admin API.

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::events::subscriptions::{self as subs, SubscriptionInput, SubscriptionPatch};
use crate::history::{self, HistoryQuery};
use crate::store::Store;

/// Filters shared by the history lists.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Our number: E.164 (+5511930001234) or its wabridge id.
    #[arg(long)]
    pub phone: Option<String>,
    /// The customer: WhatsApp id or number, or user id.
    #[arg(long)]
    pub contact: Option<String>,
    /// Items per page (1-200).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// The next_cursor a previous page printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MessagesCmd {
    /// Messages both ways, newest first.
    List {
        #[command(flatten)]
        args: HistoryArgs,
        /// `in` (from customers) or `out` (to customers).
        #[arg(long)]
        direction: Option<String>,
        /// At or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactsCmd {
    /// Customers who wrote, newest first.
    List {
        #[command(flatten)]
        args: HistoryArgs,
        /// Part of the name or of the WhatsApp id.
        #[arg(long)]
        q: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConversationsCmd {
    /// Conversations (a customer and one of our numbers), latest first.
    List {
        #[command(flatten)]
        args: HistoryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Subscribe a URL to events; prints the signing secret.
    Subscribe {
        /// http(s) URL on a public address.
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (message.received, message.status, send.failed, call.started,
        /// call.ended, template.status) or `*`.
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// Events of this API key's numbers.
        #[arg(long)]
        api_key: Option<i64>,
        /// Events of this WABA's numbers.
        #[arg(long)]
        waba: Option<i64>,
        /// A note for people (what the endpoint is).
        #[arg(long)]
        description: Option<String>,
    },
    /// List subscriptions (JSON with the global --json).
    List,
    /// One subscription (`--reveal-secret` prints the signing secret).
    Show {
        /// wabridge id of the subscription.
        id: i64,
        /// Print the signing secret in full.
        #[arg(long)]
        reveal_secret: bool,
    },
    /// Change a subscription.
    Update {
        /// wabridge id of the subscription.
        id: i64,
        /// New http(s) URL on a public address.
        #[arg(long)]
        url: Option<String>,
        /// New event types, comma-separated, or `*`.
        #[arg(long, value_delimiter = ',')]
        types: Option<Vec<String>>,
        /// A note for people (what the endpoint is).
        #[arg(long)]
        description: Option<String>,
        /// Enable a disabled endpoint again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop delivering to the endpoint.
        #[arg(long)]
        disable: bool,
        /// Generate a new signing secret (printed once).
        #[arg(long)]
        rotate_secret: bool,
    },
    /// Delete a subscription with its deliveries.
    Remove {
        /// wabridge id of the subscription.
        id: i64,
    },
    /// Deliveries, newest first (JSON with the global --json).
    Deliveries {
        /// Only this subscription's (wabridge id).
        #[arg(long)]
        subscription: Option<i64>,
        /// pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One delivery with the event and every attempt.
    Delivery {
        /// wabridge id of the delivery.
        id: i64,
    },
    /// Send a dead delivery again (same event id, fresh retry window).
    Redrive {
        /// wabridge id of the delivery.
        id: i64,
    },
}

fn query(a: &HistoryArgs) -> HistoryQuery {
    HistoryQuery {
        phone: a.phone.clone(),
        contact: a.contact.clone(),
        cursor: a.cursor.clone(),
        limit: Some(a.limit),
        ..HistoryQuery::default()
    }
}

fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A cell at most `n` characters wide.
fn cut(s: &str, n: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n - 1).collect::<String>())
    }
}

fn next(cursor: &Option<String>) {
    if let Some(c) = cursor {
        println!("more: --cursor {c}");
    }
}

pub async fn messages(cmd: MessagesCmd, store: &Store, as_json: bool) -> anyhow::Result<()> {
    let MessagesCmd::List { args, direction, since, until } = cmd;
    let q = HistoryQuery { direction, since, until, ..query(&args) };
    let page = history::messages(store, None, &q).await?;
    if as_json {
        return json(&page);
    }
    println!("{:<24} {:<3} {:<6} {:<15} {:<11} {:<10} TEXT", "TIME", "DIR", "PHONE", "CONTACT", "TYPE", "STATUS");
    for m in &page.data {
        let mut text = m.text.clone().unwrap_or_default();
        if m.deleted {
            text = "(deleted)".into();
        } else if !m.edits.is_empty() {
            text.push_str(" (edited)");
        }
        for r in &m.reactions {
            text.push_str(&format!(" [{} {}]", r.by, r.emoji));
        }
        let status = m.status.clone().or_else(|| m.state.clone()).unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<3} {:<6} {:<15} {:<11} {:<10} {}",
            m.timestamp,
            m.direction,
            m.phone,
            cut(m.contact.as_deref().unwrap_or("-"), 15),
            cut(&m.msg_type, 11),
            status,
            cut(&text, 60)
        );
    }
    next(&page.next_cursor);
    Ok(())
}

pub async fn contacts(cmd: ContactsCmd, store: &Store, as_json: bool) -> anyhow::Result<()> {
    let ContactsCmd::List { args, q } = cmd;
    let page = history::contacts(store, None, &HistoryQuery { q, ..query(&args) }).await?;
    if as_json {
        return json(&page);
    }
    println!("{:<6} {:<6} {:<20} {:<24} {:<7} NAME", "ID", "PHONE", "CONTACT", "LAST INBOUND", "WINDOW");
    for c in &page.data {
        let window = if c.window.open { "open" } else { "closed" };
        let last = c.last_inbound_at.clone().unwrap_or_else(|| "-".into());
        let name = c.profile_name.clone().unwrap_or_default();
        println!("{:<6} {:<6} {:<20} {:<24} {:<7} {}", c.id, c.phone, cut(&c.contact, 20), last, window, name);
    }
    next(&page.next_cursor);
    Ok(())
}

pub async fn conversations(cmd: ConversationsCmd, store: &Store, as_json: bool) -> anyhow::Result<()> {
    let ConversationsCmd::List { args } = cmd;
    let page = history::conversations(store, None, &query(&args)).await?;
    if as_json {
        return json(&page);
    }
    println!("{:<6} {:<20} {:<24} {:<7} NAME", "PHONE", "CONTACT", "LAST MESSAGE", "WINDOW");
    for c in &page.data {
        let window = if c.window.open { "open" } else { "closed" };
        let name = c.profile_name.clone().unwrap_or_default();
        println!("{:<6} {:<20} {:<24} {:<7} {}", c.phone, cut(&c.contact, 20), c.last_message_at, window, name);
    }
    next(&page.next_cursor);
    Ok(())
}

pub async fn events(cmd: EventsCmd, store: &Store, config: &Config, as_json: bool) -> anyhow::Result<()> {
    let private = config.events_allow_private_urls;
    match cmd {
        EventsCmd::Subscribe { url, types, api_key, waba, description } => {
            let input = SubscriptionInput { url, event_types: types, api_key, waba, description };
            let s = subs::create(store, &input, private).await?;
            json(&s)?;
            eprintln!("Verify each delivery's webhook-signature with signing_secret (Standard Webhooks).");
        }
        EventsCmd::List => {
            let list = subs::list(store).await?;
            if as_json {
                return json(&list);
            }
            println!("{:<5} {:<8} {:<40} {:<30} SCOPE", "ID", "ENABLED", "URL", "TYPES");
            for s in list {
                let scope = match (s.api_key, s.waba) {
                    (Some(k), _) => format!("api key {k}"),
                    (_, Some(w)) => format!("waba {w}"),
                    _ => "all".into(),
                };
                let enabled =
                    if s.enabled { "yes".into() } else { format!("no: {}", s.disabled_reason.unwrap_or_default()) };
                println!(
                    "{:<5} {:<8} {:<40} {:<30} {}",
                    s.id,
                    cut(&enabled, 8),
                    cut(&s.url, 40),
                    cut(&s.event_types.join(","), 30),
                    scope
                );
            }
        }
        EventsCmd::Show { id, reveal_secret } => {
            if reveal_secret {
                json(&subs::reveal(store, id).await?)?;
            } else {
                json(&subs::get(store, id).await?)?;
            }
        }
        EventsCmd::Update { id, url, types, description, enable, disable, rotate_secret } => {
            let enabled = if enable {
                Some(true)
            } else if disable {
                Some(false)
            } else {
                None
            };
            let patch = SubscriptionPatch { url, event_types: types, description, enabled, rotate_secret };
            let s = subs::update(store, id, &patch, private).await?;
            if rotate_secret {
                json(&s)?;
            } else {
                json(&s.view)?;
            }
        }
        EventsCmd::Remove { id } => {
            subs::delete(store, id).await?;
            println!("Event subscription {id} deleted.");
        }
        EventsCmd::Deliveries { subscription, state, limit } => {
            let list = subs::deliveries(store, subscription, state.as_deref(), None, limit).await?;
            if as_json {
                return json(&list);
            }
            println!(
                "{:<7} {:<5} {:<17} {:<10} {:<8} {:<24} LAST ERROR",
                "ID", "SUB", "TYPE", "STATE", "ATTEMPTS", "LAST ATTEMPT"
            );
            for d in list {
                let last = d.last_attempt_at.unwrap_or_else(|| "-".into());
                let err = d.last_error.unwrap_or_default();
                println!(
                    "{:<7} {:<5} {:<17} {:<10} {:<8} {:<24} {}",
                    d.id,
                    d.subscription,
                    d.event_type,
                    d.state,
                    d.attempts,
                    last,
                    cut(&err, 60)
                );
            }
        }
        EventsCmd::Delivery { id } => json(&subs::delivery(store, id).await?)?,
        EventsCmd::Redrive { id } => {
            subs::redrive(store, id).await?;
            println!("Event delivery {id} queued again; a running wabridge sends it within its poll interval.");
        }
    }
    Ok(())
}
