//! The 24-hour customer service window (reference meta-messaging.md §8).
//!
//! The window opens when the customer writes (or calls) and closes 24 hours after their last message. While it is
//! open any message may be sent; after that only approved templates. The last inbound time comes from the
//! `contacts` table; reads and typing indicators never extend it.

/// 24 hours in milliseconds.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// State of the window at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Free-form messages may be sent until `closes_at_ms`.
    Open { closes_at_ms: i64 },
    /// Closed since `closed_at_ms`: templates only.
    Closed { closed_at_ms: i64 },
    /// The customer never wrote: templates only.
    Never,
}

impl Window {
    /// True when a free-form message may be sent.
    pub fn is_open(&self) -> bool {
        matches!(self, Window::Open { .. })
    }
}

/// The window for a customer whose last message arrived at `last_inbound_ms` (unix ms), seen at `now_ms`.
/// A last message "in the future" (clock skew) counts as just received.
pub fn window(last_inbound_ms: Option<i64>, now_ms: i64) -> Window {
    match last_inbound_ms {
        None => Window::Never,
        Some(last) => {
            let closes = last.saturating_add(WINDOW_MS);
            if now_ms < closes {
                Window::Open { closes_at_ms: closes }
            } else {
                Window::Closed { closed_at_ms: closes }
            }
        }
    }
}

const HOW_TO: &str = "To write to this customer, send an approved template instead: type template-NAME+LANG, or \
template-NAME+LANG+value1|value2 for a template with parameters, for example template-order_ready+pt_BR+Anna|12500. \
For a template with a document, image or video header add file_link:URL, and for a link button with a variable part \
add button_param:VALUE.";

/// The text shown in the CRM chat when a free-form operator reply is refused: why, and how to send a template.
/// For [`Window::Open`] it explains that WhatsApp itself reported the window closed (error 131047 can, rarely,
/// come while our own record says the window is open).
pub fn refusal(window: &Window, now_ms: i64) -> String {
    let why = match *window {
        Window::Never => "Not sent: this customer has never written to this WhatsApp number, and WhatsApp allows \
                          free-form messages only within 24 hours of the customer's last message."
            .to_owned(),
        Window::Closed { closed_at_ms } => format!(
            "Not sent: the customer last wrote {} ago, and WhatsApp allows free-form messages only within 24 hours \
             of the customer's last message.",
            ago(now_ms.saturating_sub(closed_at_ms.saturating_sub(WINDOW_MS)))
        ),
        Window::Open { closes_at_ms } => format!(
            "Not sent: WhatsApp reported that the 24-hour window for free-form messages to this customer is closed, \
             although their last message arrived {} ago.",
            ago(now_ms.saturating_sub(closes_at_ms.saturating_sub(WINDOW_MS)))
        ),
    };
    format!("{why}\n{HOW_TO}")
}

/// "45 minutes", "26 hours", "3 days".
fn ago(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    let hours = minutes / 60;
    let days = hours / 24;
    let (n, unit) = if hours < 1 {
        (minutes, "minute")
    } else if hours < 48 {
        (hours, "hour")
    } else {
        (days, "day")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 60 * 60 * 1000;

    #[test]
    fn states() {
        let now = 1_767_800_000_000;
        assert_eq!(window(None, now), Window::Never);
        assert_eq!(window(Some(now - H), now), Window::Open { closes_at_ms: now + 23 * H });
        assert_eq!(window(Some(now - 24 * H + 1), now), Window::Open { closes_at_ms: now + 1 });
        assert_eq!(window(Some(now - 24 * H), now), Window::Closed { closed_at_ms: now });
        assert_eq!(window(Some(now - 30 * H), now), Window::Closed { closed_at_ms: now - 6 * H });
        assert_eq!(window(Some(now + H), now), Window::Open { closes_at_ms: now + 25 * H });
        assert_eq!(window(Some(i64::MAX), now), Window::Open { closes_at_ms: i64::MAX });
        assert!(window(Some(now), now).is_open() && !Window::Never.is_open());
    }

    #[test]
    fn refusal_texts() {
        let now = 1_767_800_000_000;
        let closed = refusal(&window(Some(now - 26 * H - 5 * 60_000), now), now);
        assert!(
            closed.starts_with("Not sent: the customer last wrote 26 hours ago, and WhatsApp allows free-form"),
            "{closed}"
        );
        assert!(closed.contains("template-NAME+LANG") && closed.contains("template-order_ready+pt_BR+Anna|12500"));
        assert!(closed.contains("file_link:URL") && closed.contains("button_param:VALUE"));
        assert!(refusal(&window(Some(now - 73 * H), now), now).contains("last wrote 3 days ago"));
        assert!(refusal(&window(Some(now - 25 * H), now), now).contains("last wrote 25 hours ago"));
        let never = refusal(&Window::Never, now);
        assert!(never.starts_with("Not sent: this customer has never written to this WhatsApp number"));
        assert!(never.contains("template-NAME+LANG"));
        let open = refusal(&window(Some(now - 2 * 60_000), now), now);
        assert!(open.starts_with("Not sent: WhatsApp reported that the 24-hour window"), "{open}");
        assert!(open.contains("arrived 2 minutes ago"));
        assert!(refusal(&window(Some(now - 60_000), now), now).contains("arrived 1 minute ago"));
    }
}
