//! Meta's media table (reference meta-messaging.md §6): which MIME types WhatsApp takes for each kind and how
//! large a file may be, checked before anything is uploaded (`POST /api/v1/media`).
//!
//! | kind | MIME types | at most |
//! |---|---|---|
//! | audio | `audio/aac`, `audio/amr`, `audio/mpeg`, `audio/mp4`, `audio/ogg` (OPUS only) | 16 MB |
//! | document | `text/plain`, `application/pdf`, Word, Excel and PowerPoint (`.doc(x)`, `.xls(x)`, `.ppt(x)`) | 100 MB |
//! | image | `image/jpeg`, `image/png` | 5 MB |
//! | sticker | `image/webp` | 100 KB static, 500 KB animated |
//! | video | `video/mp4`, `video/3gpp` | 16 MB |
//!
//! MB here is 1,024 × 1,024 bytes and KB 1,024 bytes.

use super::Kind;

const KB: usize = 1024;
const MB: usize = 1024 * 1024;

/// Meta's MIME types, their kind and size limit (stickers: the animated limit; see [`check`]).
pub const TABLE: &[(&str, Kind, usize)] = &[
    ("audio/aac", Kind::Audio, 16 * MB),
    ("audio/amr", Kind::Audio, 16 * MB),
    ("audio/mpeg", Kind::Audio, 16 * MB),
    ("audio/mp4", Kind::Audio, 16 * MB),
    ("audio/ogg", Kind::Audio, 16 * MB),
    ("text/plain", Kind::Document, 100 * MB),
    ("application/pdf", Kind::Document, 100 * MB),
    ("application/msword", Kind::Document, 100 * MB),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", Kind::Document, 100 * MB),
    ("application/vnd.ms-excel", Kind::Document, 100 * MB),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", Kind::Document, 100 * MB),
    ("application/vnd.ms-powerpoint", Kind::Document, 100 * MB),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", Kind::Document, 100 * MB),
    ("image/jpeg", Kind::Image, 5 * MB),
    ("image/png", Kind::Image, 5 * MB),
    ("image/webp", Kind::Sticker, 500 * KB),
    ("video/mp4", Kind::Video, 16 * MB),
    ("video/3gpp", Kind::Video, 16 * MB),
];

/// A static sticker's limit.
pub const STATIC_STICKER: usize = 100 * KB;

/// The largest file any type allows.
pub const LARGEST: usize = 100 * MB;

/// The MIME type without parameters, lower-case (`audio/ogg; codecs=opus` → `audio/ogg`).
pub fn essence(mime: &str) -> String {
    mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The kind and size limit of a MIME type, or why WhatsApp does not take it.
pub fn limit(mime: &str) -> Result<(Kind, usize), String> {
    let m = essence(mime);
    TABLE.iter().find(|(t, _, _)| *t == m).map(|(_, k, max)| (*k, *max)).ok_or_else(|| {
        format!(
            "{m:?} is not a type WhatsApp takes; it takes {}",
            TABLE.iter().map(|(t, _, _)| *t).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A WebP file with the animation flag (`VP8X` chunk, flags bit 1).
pub fn is_animated_webp(bytes: &[u8]) -> bool {
    bytes.len() > 20
        && &bytes[0..4] == b"RIFF"
        && &bytes[8..12] == b"WEBP"
        && &bytes[12..16] == b"VP8X"
        && bytes[20] & 0x02 != 0
}

/// Checks a whole file against the table: its kind, or why it is refused.
pub fn check(mime: &str, bytes: &[u8]) -> Result<Kind, String> {
    let (kind, max) = limit(mime)?;
    let m = essence(mime);
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let max = if kind == Kind::Sticker && !is_animated_webp(bytes) { STATIC_STICKER } else { max };
    if bytes.len() > max {
        return Err(too_large(&m, kind, max, bytes.len()));
    }
    if m == "audio/ogg" && !bytes.windows(8).take(128).any(|w| w == b"OpusHead") {
        return Err("audio/ogg must be OPUS-encoded (WhatsApp does not take other Ogg audio)".into());
    }
    Ok(kind)
}

/// The refusal for a file over its type's limit.
pub fn too_large(mime: &str, kind: Kind, max: usize, got: usize) -> String {
    let what = match (kind, max) {
        (Kind::Sticker, STATIC_STICKER) => "a static sticker".to_string(),
        (Kind::Sticker, _) => "an animated sticker".to_string(),
        _ => format!("{mime} ({})", kind.as_str()),
    };
    format!("is too large: {what} may be at most {}, and this file has {got} bytes or more", size(max))
}

fn size(bytes: usize) -> String {
    if bytes >= MB {
        format!("{} MB", bytes / MB)
    } else {
        format!("{} KB", bytes / KB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webp(animated: bool, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len.max(30)];
        b[0..4].copy_from_slice(b"RIFF");
        b[8..12].copy_from_slice(b"WEBP");
        b[12..16].copy_from_slice(b"VP8X");
        b[20] = if animated { 0x02 } else { 0x10 };
        b
    }

    #[test]
    fn every_row_of_metas_table() {
        assert_eq!(limit("image/jpeg"), Ok((Kind::Image, 5 * MB)));
        assert_eq!(limit("IMAGE/PNG"), Ok((Kind::Image, 5 * MB)));
        assert_eq!(limit("video/3gpp"), Ok((Kind::Video, 16 * MB)));
        assert_eq!(limit("audio/ogg; codecs=opus"), Ok((Kind::Audio, 16 * MB)));
        assert_eq!(limit("application/pdf"), Ok((Kind::Document, 100 * MB)));
        assert_eq!(limit("image/webp"), Ok((Kind::Sticker, 500 * KB)));
        assert!(limit("image/gif").unwrap_err().contains("\"image/gif\" is not a type WhatsApp takes"));
        assert_eq!(TABLE.len(), 18);
        assert_eq!(TABLE.iter().map(|r| r.2).max(), Some(LARGEST));
    }

    #[test]
    fn sizes_are_checked_per_type_and_stickers_by_animation() {
        assert_eq!(check("image/jpeg", &vec![1; 5 * MB]), Ok(Kind::Image));
        let big = check("image/jpeg", &vec![1; 5 * MB + 1]).unwrap_err();
        assert!(big.contains("image/jpeg (image) may be at most 5 MB"), "{big}");
        assert_eq!(check("image/webp", &webp(false, 100 * KB)), Ok(Kind::Sticker));
        let st = check("image/webp", &webp(false, 100 * KB + 1)).unwrap_err();
        assert!(st.contains("a static sticker may be at most 100 KB"), "{st}");
        assert_eq!(check("image/webp", &webp(true, 500 * KB)), Ok(Kind::Sticker));
        assert!(check("image/webp", &webp(true, 500 * KB + 1)).unwrap_err().contains("an animated sticker"));
        assert!(check("video/mp4", &vec![0; 16 * MB + 1]).is_err());
        assert_eq!(check("text/plain", b""), Err("the file is empty".into()));
    }

    #[test]
    fn ogg_audio_must_be_opus() {
        let mut opus = b"OggS\0\x02".to_vec();
        opus.extend_from_slice(&[0; 22]);
        opus.extend_from_slice(b"OpusHead\x01\x01");
        assert_eq!(check("audio/ogg", &opus), Ok(Kind::Audio));
        let vorbis = b"OggS\0\x02\0\0\0\0\0\0\0\0\x01vorbis".to_vec();
        assert!(check("audio/ogg", &vorbis).unwrap_err().contains("OPUS"));
    }
}
