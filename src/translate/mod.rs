//! Pure decisions between WhatsApp and the CRM: template commands, the 24-hour window, rendering inbound
//! messages for the contact centre, operator text for WhatsApp, template checks and locale fallback.

pub mod bbcode;
pub mod command;
pub mod locale;
pub mod media_kind;
pub mod render;
pub mod template;
pub mod variants;
pub mod window;

pub use bbcode::{split_signature, to_plain, to_whatsapp};
pub use command::{parse_chat, parse_sms, CommandError, SmsBody, TemplateCommand};
pub use locale::pick_language;
pub use media_kind::{media_kind, MediaKind};
pub use render::{crm_text, media_of};
pub use template::{analyse, build, from_command, select, HeaderFormat, Params, Shape, TemplateDef, TemplateError};
pub use variants::variant_problems;
pub use window::{refusal, window, Window};
