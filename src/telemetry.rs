//! Structured logging with `tracing`: text or JSON, filtered by `log` (`WABRIDGE_LOG`).
//! Rule: no secrets, phone numbers or message texts at INFO or above.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref()));
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Colour (ANSI escapes) only on a terminal, and never when `NO_COLOR` is set to anything but the empty string
/// (<https://no-color.org>): a log piped to a file or journald stays plain text.
pub fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None), "piped or redirected");
        assert!(!colour(true, Some(OsStr::new("1"))), "NO_COLOR=1");
        assert!(colour(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
    }
}
