-- Inbound messages reach the CRM in the order their webhooks arrived, and at most once across crashes.
--
-- `messages.arrival`: the message's place in arrival order, `inbox.id * 4096 + its index in the body` (a webhook's
-- row id follows the order in which webhooks were acknowledged). `crm.deliver` jobs carry it as `order_seq` under
-- the order key of their chat (`jobs::earlier_in_order`), and a delivery also waits while an earlier webhook of
-- the same app is not processed yet (`inbox_unprocessed`), since it may hold an earlier message of that chat.
--
-- `messages.crm_attempt_at`: set (and committed) before `imconnector.send.messages` is called, cleared when the
-- portal answered that it did not take the message; a delivery that finds it set without `crm_message_id` asks
-- the portal whether it already has the message before sending it again (crm/deliver.rs). Where the portal
-- cannot tell (no chat of the customer known yet), it is sent again and `crm_resent_uncertain` counts it.
ALTER TABLE messages ADD COLUMN arrival BIGINT;
ALTER TABLE messages ADD COLUMN crm_attempt_at BIGINT;
ALTER TABLE messages ADD COLUMN crm_resent_uncertain INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN order_seq BIGINT;
CREATE INDEX inbox_unprocessed ON inbox (app_id, id) WHERE processed_at IS NULL;
