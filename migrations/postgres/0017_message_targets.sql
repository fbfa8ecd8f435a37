-- The target of reactions, edits and revokes stored before 0014 (which added `target_wamid` for new rows only):
-- a CRM delivery checks "was this message deleted by the customer?" by `target_wamid` (PostgreSQL dialect).
UPDATE messages SET target_wamid = CASE msg_type
        WHEN 'revoke' THEN (raw::jsonb) -> 'revoke' ->> 'original_message_id'
        WHEN 'edit' THEN (raw::jsonb) -> 'edit' ->> 'original_message_id'
        WHEN 'reaction' THEN (raw::jsonb) -> 'reaction' ->> 'message_id'
    END
WHERE target_wamid IS NULL AND msg_type IN ('revoke', 'edit', 'reaction') AND raw IS NOT NULL;
