-- WhatsApp calling activation per phone (PostgreSQL dialect; booleans are BOOLEAN, NULL = not set).
-- Existing calling columns (0001): calling_enabled (what wabridge wants), calling_status (Meta's calling status
-- as last known), sip_host, sip_port, srtp_key_exchange, calling_last_error (Meta's message), sip_password
-- (sealed), asterisk_target.
ALTER TABLE phones ADD COLUMN sip_status TEXT;
ALTER TABLE phones ADD COLUMN call_icon_visibility TEXT;
ALTER TABLE phones ADD COLUMN callback_permission TEXT;
-- Challenge Meta's INVITEs with digest authentication; NULL = on whenever the SIP password is known.
ALTER TABLE phones ADD COLUMN sip_digest BOOLEAN;
-- The last Graph error of an activation: Meta's code, error_data.details, fbtrace_id and when it happened.
ALTER TABLE phones ADD COLUMN calling_error_code BIGINT;
ALTER TABLE phones ADD COLUMN calling_error_details TEXT;
ALTER TABLE phones ADD COLUMN calling_error_trace TEXT;
ALTER TABLE phones ADD COLUMN calling_error_at BIGINT;
