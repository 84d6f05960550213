-- Finding the pending call for a message ref (to replace its content with the latest,
-- `Tx::outbox_replace_pending`) without a scan: only pending rows with a ref are indexed.
CREATE INDEX outbox_pending_ref ON outbox (ref_key, method) WHERE state = 'pending' AND ref_key IS NOT NULL;
