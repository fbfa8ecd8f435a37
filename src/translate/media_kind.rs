//! Which WhatsApp media kind a file is sent as, from its MIME type and file name (reference §6, supported types).
//!
//! Decisions:
//! - Only the MIME types WhatsApp lists for a kind give that kind: `image/jpeg` and `image/png` are images,
//!   `video/mp4` and `video/3gpp` videos, `audio/aac|amr|mpeg|mp4|ogg` audio (plus the common aliases
//!   `audio/mp3`, `audio/x-m4a`, `audio/m4a`, `audio/opus`).
//! - Everything else is sent as a document, which WhatsApp delivers as a file. That includes `image/webp`: an
//!   operator's webp is usually a picture, not a 512×512 sticker, and a sticker send would fail or look odd.
//!   [`MediaKind::Sticker`] therefore only comes from inbound messages (see `render::media_of`).
//! - When the MIME type is missing, empty, `application/octet-stream` or `binary/octet-stream`, the file name's
//!   extension decides (through `mime_guess`). MIME parameters (`; codecs=opus`) and case are ignored.

use serde::Serialize;

/// A WhatsApp media message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl MediaKind {
    /// The Graph API message `type` (`"image"`, `"video"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }
}

impl std::fmt::Display for MediaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind an outbound file is sent as. `file_name` may also be a URL path; a query string or fragment is ignored.
pub fn media_kind(mime: Option<&str>, file_name: &str) -> MediaKind {
    let declared = mime.map(essence).unwrap_or_default();
    let mime = if declared.is_empty() || declared == "application/octet-stream" || declared == "binary/octet-stream" {
        let path = file_name.split(['?', '#']).next().unwrap_or_default();
        mime_guess::from_path(path).first_raw().unwrap_or_default().to_owned()
    } else {
        declared
    };
    kind_of_mime(&mime)
}

/// Lower-cased MIME type without parameters.
fn essence(mime: &str) -> String {
    mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

fn kind_of_mime(mime: &str) -> MediaKind {
    match mime {
        "image/jpeg" | "image/jpg" | "image/pjpeg" | "image/png" => MediaKind::Image,
        "video/mp4" | "video/3gpp" => MediaKind::Video,
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp3" | "audio/mp4" | "audio/x-m4a" | "audio/m4a"
        | "audio/ogg" | "audio/opus" => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_mime() {
        for (mime, kind) in [
            ("image/jpeg", MediaKind::Image),
            ("image/png", MediaKind::Image),
            ("IMAGE/PNG", MediaKind::Image),
            ("image/webp", MediaKind::Document),
            ("image/gif", MediaKind::Document),
            ("video/mp4", MediaKind::Video),
            ("video/3gpp", MediaKind::Video),
            ("video/quicktime", MediaKind::Document),
            ("audio/ogg; codecs=opus", MediaKind::Audio),
            ("audio/mpeg", MediaKind::Audio),
            ("audio/aac", MediaKind::Audio),
            ("audio/amr", MediaKind::Audio),
            ("audio/mp4", MediaKind::Audio),
            ("audio/wav", MediaKind::Document),
            ("application/pdf", MediaKind::Document),
            ("text/plain", MediaKind::Document),
        ] {
            assert_eq!(media_kind(Some(mime), "whatever.bin"), kind, "{mime}");
        }
    }

    #[test]
    fn declared_mime_wins_over_extension() {
        assert_eq!(media_kind(Some("application/pdf"), "photo.jpg"), MediaKind::Document);
        assert_eq!(media_kind(Some("image/png"), "scan.pdf"), MediaKind::Image);
    }

    #[test]
    fn extension_when_mime_missing_or_generic() {
        for mime in [None, Some(""), Some("application/octet-stream"), Some("binary/octet-stream")] {
            assert_eq!(media_kind(mime, "photo.JPG"), MediaKind::Image);
            assert_eq!(media_kind(mime, "clip.mp4"), MediaKind::Video);
            assert_eq!(media_kind(mime, "clip.3gp"), MediaKind::Video);
            assert_eq!(media_kind(mime, "voice.ogg"), MediaKind::Audio);
            assert_eq!(media_kind(mime, "song.mp3"), MediaKind::Audio);
            assert_eq!(media_kind(mime, "sticker.webp"), MediaKind::Document);
            assert_eq!(media_kind(mime, "invoice.pdf"), MediaKind::Document);
            assert_eq!(media_kind(mime, "no_extension"), MediaKind::Document);
            assert_eq!(media_kind(mime, ""), MediaKind::Document);
        }
        assert_eq!(media_kind(None, "https://cdn.example.com/a/photo.png?v=2#x"), MediaKind::Image);
    }

    #[test]
    fn names() {
        assert_eq!(MediaKind::Sticker.as_str(), "sticker");
        assert_eq!(MediaKind::Document.to_string(), "document");
        assert_eq!(serde_json::to_value(MediaKind::Image).unwrap(), serde_json::json!("image"));
    }
}
