//! Pure decisions between WhatsApp and the CRM: template commands, the 24-hour window, rendering inbound
//! messages for the contact centre, operator text for WhatsApp, template checks and locale fallback.
