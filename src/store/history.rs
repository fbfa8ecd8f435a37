//! Reading the history: contacts, conversations and messages of both directions (the customer's in `messages`,
//! ours in `outbound`, read marks left out), newest first, keyset-paged, scoped to a set of phones.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// Which rows: the phones a caller may see (`None`: all) and the filters asked for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The caller's phones; `Some(empty)` sees nothing.
    pub scope: Option<Vec<i64>>,
    pub phone: Option<i64>,
    /// A customer's WhatsApp id (digits) or user id.
    pub contact: Option<String>,
    /// `in` or `out`.
    pub direction: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// Contacts only: part of the name or of the WhatsApp id.
    pub q: Option<String>,
}

/// Query text and its arguments, numbered as they are added.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

enum Arg {
    I(i64),
    S(String),
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
    /// Adds an argument and returns its placeholder.
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }
    async fn fetch(self, store: &Store) -> Result<Vec<AnyRow>, StoreError> {
        let mut q = sqlx::query(&self.text);
        for a in self.args {
            q = match a {
                Arg::I(i) => q.bind(i),
                Arg::S(s) => q.bind(s),
            };
        }
        Ok(q.fetch_all(&store.pool).await?)
    }
}

/// ` AND <col> IN (…)` for the scope (ids are integers, written inline), or nothing.
fn scope_sql(scope: &Option<Vec<i64>>, col: &str) -> String {
    match scope {
        None => String::new(),
        Some(ids) if ids.is_empty() => " AND 1 = 0".into(),
        Some(ids) => {
            format!(" AND {col} IN ({})", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
        }
    }
}

/// A stored message of either direction.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// `in` or `out`.
    pub direction: String,
    /// `messages.id` or `outbound.id`.
    pub id: i64,
    pub phone_id: i64,
    pub contact: Option<String>,
    pub wamid: Option<String>,
    /// The stored type (inbound); empty for sends (their request says).
    pub msg_type: String,
    pub body: Option<String>,
    /// The webhook's message object, or the send's request.
    pub raw: Option<String>,
    pub context_wamid: Option<String>,
    pub target_wamid: Option<String>,
    pub state: Option<String>,
    pub status: Option<String>,
    pub status_at: Option<i64>,
    pub error_code: Option<i64>,
    pub error_text: Option<String>,
    pub origin: Option<String>,
    /// Its time (WhatsApp's for the customer's, queued for ours), the sort key with `rank` and `id`.
    pub at: i64,
    /// 0 for `in`, 1 for `out`.
    pub rank: i64,
}

/// Messages, newest first, after `cursor` (`(at, rank, id)` of the last one shown).
pub async fn messages(
    store: &Store,
    f: &Filter,
    cursor: Option<(i64, i64, i64)>,
    limit: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    let mut q = Sql::default();
    let want = |d: &str| f.direction.as_deref().is_none_or(|x| x == d);
    let mut branches = Vec::new();
    if want("in") {
        let mut b = String::from(
            "SELECT 'in' AS direction, 0 AS rank, m.id, m.phone_id, c.contact_key AS contact, m.wamid, m.msg_type, \
             m.body, m.raw, m.context_wamid, m.target_wamid, CAST(NULL AS TEXT) AS state, m.status, m.status_at, \
             m.error_code, m.error_text, CAST(NULL AS TEXT) AS origin, m.sent_at AS at \
             FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id WHERE m.direction = 'in'",
        );
        b.push_str(&scope_sql(&f.scope, "m.phone_id"));
        if let Some(p) = f.phone {
            b.push_str(&format!(" AND m.phone_id = {}", q.arg(Arg::I(p))));
        }
        if let Some(c) = &f.contact {
            let ph = q.arg(Arg::S(c.clone()));
            b.push_str(&format!(" AND (c.contact_key = {ph} OR c.wa_id = {ph})"));
        }
        if let Some(s) = f.since {
            b.push_str(&format!(" AND m.sent_at >= {}", q.arg(Arg::I(s))));
        }
        if let Some(u) = f.until {
            b.push_str(&format!(" AND m.sent_at < {}", q.arg(Arg::I(u))));
        }
        branches.push(b);
    }
    if want("out") {
        let mut b = String::from(
            "SELECT 'out' AS direction, 1 AS rank, o.id, o.phone_id, o.recipient AS contact, o.wamid, \
             '' AS msg_type, CAST(NULL AS TEXT) AS body, o.request AS raw, CAST(NULL AS TEXT) AS context_wamid, \
             o.target_wamid, o.state, o.status, CAST(NULL AS BIGINT) AS status_at, o.error_code, o.error_text, \
             o.origin, o.created_at AS at FROM outbound o WHERE o.origin <> 'read'",
        );
        b.push_str(&scope_sql(&f.scope, "o.phone_id"));
        if let Some(p) = f.phone {
            b.push_str(&format!(" AND o.phone_id = {}", q.arg(Arg::I(p))));
        }
        if let Some(c) = &f.contact {
            b.push_str(&format!(" AND o.recipient = {}", q.arg(Arg::S(c.clone()))));
        }
        if let Some(s) = f.since {
            b.push_str(&format!(" AND o.created_at >= {}", q.arg(Arg::I(s))));
        }
        if let Some(u) = f.until {
            b.push_str(&format!(" AND o.created_at < {}", q.arg(Arg::I(u))));
        }
        branches.push(b);
    }
    if branches.is_empty() {
        return Ok(Vec::new());
    }
    q.push("SELECT * FROM (");
    q.push(&branches.join(" UNION ALL "));
    q.push(") t WHERE 1 = 1");
    if let Some((at, rank, id)) = cursor {
        let (a, r, i) = (q.arg(Arg::I(at)), q.arg(Arg::I(rank)), q.arg(Arg::I(id)));
        q.push(&format!(" AND (at < {a} OR (at = {a} AND (rank < {r} OR (rank = {r} AND id < {i}))))"));
    }
    let l = q.arg(Arg::I(limit));
    q.push(&format!(" ORDER BY at DESC, rank DESC, id DESC LIMIT {l}"));
    let rows = q.fetch(store).await?;
    rows.iter()
        .map(|r| {
            Ok(MessageRow {
                direction: r.try_get("direction")?,
                id: r.try_get("id")?,
                phone_id: r.try_get("phone_id")?,
                contact: r.try_get("contact")?,
                wamid: r.try_get("wamid")?,
                msg_type: r.try_get("msg_type")?,
                body: r.try_get("body")?,
                raw: r.try_get("raw")?,
                context_wamid: r.try_get("context_wamid")?,
                target_wamid: r.try_get("target_wamid")?,
                state: r.try_get("state")?,
                status: r.try_get("status")?,
                status_at: r.try_get("status_at")?,
                error_code: r.try_get("error_code")?,
                error_text: r.try_get("error_text")?,
                origin: r.try_get("origin")?,
                at: r.try_get("at")?,
                rank: r.try_get::<i64, _>("rank").or_else(|_| r.try_get::<i32, _>("rank").map(i64::from))?,
            })
        })
        .collect()
}

/// A reaction, an edit or a revoke, by its target.
#[derive(Debug, Clone)]
pub struct Related {
    pub target: String,
    pub direction: String,
    pub msg_type: String,
    pub raw: Option<String>,
    pub at: i64,
}

/// The reactions, edits and revokes about any of `wamids`, oldest first (sends that failed left out).
pub async fn related(store: &Store, wamids: &[String]) -> Result<Vec<Related>, StoreError> {
    if wamids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Sql::default();
    let list: Vec<String> = wamids.iter().map(|w| q.arg(Arg::S(w.clone()))).collect();
    let list = list.join(", ");
    q.push(&format!(
        "SELECT * FROM (SELECT m.target_wamid AS target, 'in' AS direction, m.msg_type, m.raw, m.sent_at AS at, m.id \
         FROM messages m WHERE m.target_wamid IN ({list}) AND m.direction = 'in' \
         UNION ALL SELECT o.target_wamid, 'out', 'reaction', o.request, o.created_at, o.id FROM outbound o \
         WHERE o.target_wamid IN ({list}) AND o.state <> 'failed') t ORDER BY at, id"
    ));
    let rows = q.fetch(store).await?;
    rows.iter()
        .map(|r| {
            Ok(Related {
                target: r.try_get("target")?,
                direction: r.try_get("direction")?,
                msg_type: r.try_get("msg_type")?,
                raw: r.try_get("raw")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}

/// A contact as stored.
#[derive(Debug, Clone)]
pub struct ContactRow {
    pub id: i64,
    pub phone_id: i64,
    pub contact_key: String,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub last_inbound_at: Option<i64>,
    pub created_at: i64,
}

/// Contacts, newest first, with ids below `before`.
pub async fn contacts(
    store: &Store,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ContactRow>, StoreError> {
    let mut q = Sql::default();
    q.push(
        "SELECT id, phone_id, contact_key, wa_id, user_id, profile_name, last_inbound_at, created_at FROM contacts \
         WHERE 1 = 1",
    );
    let scope = scope_sql(&f.scope, "phone_id");
    q.push(&scope);
    if let Some(p) = f.phone {
        let ph = q.arg(Arg::I(p));
        q.push(&format!(" AND phone_id = {ph}"));
    }
    if let Some(c) = &f.contact {
        let ph = q.arg(Arg::S(c.clone()));
        q.push(&format!(" AND (contact_key = {ph} OR wa_id = {ph})"));
    }
    if let Some(text) = &f.q {
        let ph = q.arg(Arg::S(format!("%{}%", text.to_lowercase())));
        q.push(&format!(" AND (LOWER(COALESCE(profile_name, '')) LIKE {ph} OR contact_key LIKE {ph})"));
    }
    if let Some(b) = before {
        let ph = q.arg(Arg::I(b));
        q.push(&format!(" AND id < {ph}"));
    }
    let l = q.arg(Arg::I(limit));
    q.push(&format!(" ORDER BY id DESC LIMIT {l}"));
    let rows = q.fetch(store).await?;
    rows.iter()
        .map(|r| {
            Ok(ContactRow {
                id: r.try_get("id")?,
                phone_id: r.try_get("phone_id")?,
                contact_key: r.try_get("contact_key")?,
                wa_id: r.try_get("wa_id")?,
                user_id: r.try_get("user_id")?,
                profile_name: r.try_get("profile_name")?,
                last_inbound_at: r.try_get("last_inbound_at")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// A conversation: a customer of a phone and the time of its latest message either way.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    pub phone_id: i64,
    pub contact_key: String,
    pub last_at: i64,
    pub profile_name: Option<String>,
    pub last_inbound_at: Option<i64>,
}

/// Conversations, latest first, after `cursor` (`(last_at, phone_id, contact)` of the last one shown).
pub async fn conversations(
    store: &Store,
    f: &Filter,
    cursor: Option<(i64, i64, String)>,
    limit: i64,
) -> Result<Vec<ConversationRow>, StoreError> {
    let mut q = Sql::default();
    let mut inb = format!(
        "SELECT m.phone_id, c.contact_key AS ckey, m.sent_at AS at FROM messages m JOIN contacts c ON c.id = m.contact_id \
         WHERE m.direction = 'in'{}",
        scope_sql(&f.scope, "m.phone_id")
    );
    let mut out = format!(
        "SELECT o.phone_id, o.recipient AS ckey, o.created_at AS at FROM outbound o WHERE o.origin <> 'read'{}",
        scope_sql(&f.scope, "o.phone_id")
    );
    if let Some(p) = f.phone {
        let ph = q.arg(Arg::I(p));
        inb.push_str(&format!(" AND m.phone_id = {ph}"));
        out.push_str(&format!(" AND o.phone_id = {ph}"));
    }
    if let Some(c) = &f.contact {
        let ph = q.arg(Arg::S(c.clone()));
        inb.push_str(&format!(" AND c.contact_key = {ph}"));
        out.push_str(&format!(" AND o.recipient = {ph}"));
    }
    q.push(&format!(
        "SELECT t.phone_id, t.ckey, t.last_at, k.profile_name, k.last_inbound_at FROM \
         (SELECT phone_id, ckey, MAX(at) AS last_at FROM ({inb} UNION ALL {out}) u GROUP BY phone_id, ckey) t \
         LEFT JOIN contacts k ON k.phone_id = t.phone_id AND k.contact_key = t.ckey WHERE 1 = 1"
    ));
    if let Some((at, phone, key)) = cursor {
        let (a, p, k) = (q.arg(Arg::I(at)), q.arg(Arg::I(phone)), q.arg(Arg::S(key)));
        q.push(&format!(
            " AND (t.last_at < {a} OR (t.last_at = {a} AND (t.phone_id < {p} OR (t.phone_id = {p} AND t.ckey < {k}))))"
        ));
    }
    let l = q.arg(Arg::I(limit));
    q.push(&format!(" ORDER BY t.last_at DESC, t.phone_id DESC, t.ckey DESC LIMIT {l}"));
    let rows = q.fetch(store).await?;
    rows.iter()
        .map(|r| {
            Ok(ConversationRow {
                phone_id: r.try_get("phone_id")?,
                contact_key: r.try_get("ckey")?,
                last_at: r.try_get("last_at")?,
                profile_name: r.try_get("profile_name")?,
                last_inbound_at: r.try_get("last_inbound_at")?,
            })
        })
        .collect()
}

/// The ids of the phones of a WABA (an API key's scope).
pub async fn phones_of_waba(store: &Store, waba_id: i64) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query("SELECT id FROM phones WHERE waba_id = $1 ORDER BY id")
        .bind(waba_id)
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// The id of the phone with this E.164 number.
pub async fn phone_by_number(store: &Store, number: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT id FROM phones WHERE number = $1").bind(number).fetch_optional(&store.pool).await?;
    row.map(|r| Ok(r.try_get("id")?)).transpose()
}
