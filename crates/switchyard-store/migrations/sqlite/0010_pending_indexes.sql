-- The inbox's and the outbox's state indexes hold the rows that are still waiting, not every
-- row ever handled or sent. `inbox_by_state (state, id)` and `outbox_by_key (state,
-- ordering_key, id)` kept an entry for each done item and sent call until it was pruned: each
-- completion moved an entry from the pending part of the index to the done part, two leaf
-- pages written where one is needed, and the done part grew for the whole retention. What
-- reads them (claims, the heads' triggers, the health checks) asks for pending or failed rows;
-- the rest reads by id. `state` is in each index too, so the reads stay on the index (SQLite
-- does not take a partial index's condition as known).
DROP INDEX inbox_by_state;
CREATE INDEX inbox_pending ON inbox (id, state) WHERE state = 'pending';
CREATE INDEX inbox_failed ON inbox (id, state) WHERE state = 'failed';
DROP INDEX outbox_by_key;
CREATE INDEX outbox_pending_by_key ON outbox (ordering_key, id, state) WHERE state = 'pending';
CREATE INDEX outbox_failed ON outbox (id, state) WHERE state = 'failed';
