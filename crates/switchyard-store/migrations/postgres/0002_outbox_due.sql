-- The sender asks when the next pending call is due: an index answers without a scan.
CREATE INDEX outbox_pending_due ON outbox (state, not_before);
