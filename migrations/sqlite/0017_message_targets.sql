-- The target of reactions, edits and revokes stored before 0014 (which added `target_wamid` for new rows only):
-- a CRM delivery checks "was this message deleted by the customer?" by `target_wamid` (SQLite dialect).
UPDATE messages SET target_wamid = CASE msg_type
        WHEN 'revoke' THEN json_extract(raw, '$.revoke.original_message_id')
        WHEN 'edit' THEN json_extract(raw, '$.edit.original_message_id')
        WHEN 'reaction' THEN json_extract(raw, '$.reaction.message_id')
    END
WHERE target_wamid IS NULL AND msg_type IN ('revoke', 'edit', 'reaction') AND raw IS NOT NULL AND json_valid(raw);
