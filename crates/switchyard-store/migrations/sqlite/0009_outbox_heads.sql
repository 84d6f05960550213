-- Every ordering key's head of line (its oldest pending call) marked on its row, so that the
-- sender's search for due calls and its look-up of the next due time read a small index of
-- the heads alone. Before, both found the heads key by key (a recursive seek per key with
-- pending calls): about 3 ms each with 1,000 channels waiting, at every wake-up of the sender.
-- Triggers keep the mark, so every write of the outbox (the store's, an operator's) keeps it
-- right. `head` may stay 1 on a row that is no longer pending: the index and the queries
-- look at pending rows only. (PostgreSQL claims with `FOR UPDATE SKIP LOCKED` instead.)
ALTER TABLE outbox ADD COLUMN head INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET head = 1 WHERE state = 'pending' AND id = (
    SELECT p.id FROM outbox p WHERE p.state = 'pending' AND p.ordering_key = outbox.ordering_key
    ORDER BY p.id LIMIT 1);
-- `state` and `head` in it too, so the heads' searches read this index alone (SQLite does not
-- take a partial index's condition as known).
CREATE INDEX outbox_heads ON outbox (not_before, lease_until, id, state, head)
    WHERE head = 1 AND state = 'pending';
-- The heads' index answers the next-due look-up; this one only cost writes.
DROP INDEX outbox_pending_due;

-- A pending call queued where nothing of its key is pending heads its line.
CREATE TRIGGER outbox_head_on_insert AFTER INSERT ON outbox
WHEN NEW.state = 'pending' AND NOT EXISTS (
    SELECT 1 FROM outbox p WHERE p.state = 'pending' AND p.ordering_key = NEW.ordering_key
    AND p.id < NEW.id)
BEGIN
    UPDATE outbox SET head = 1 WHERE id = NEW.id;
END;

-- A call that stops pending (sent, failed) passes the head to the next of its key.
CREATE TRIGGER outbox_head_on_leaving AFTER UPDATE OF state ON outbox
WHEN OLD.state = 'pending' AND NEW.state <> 'pending'
BEGIN
    UPDATE outbox SET head = 1 WHERE head = 0 AND id = (
        SELECT p.id FROM outbox p WHERE p.state = 'pending'
        AND p.ordering_key = NEW.ordering_key ORDER BY p.id LIMIT 1);
END;

-- A call made pending again (by hand) may go before the head of its key: the first pending
-- call of the key heads it.
CREATE TRIGGER outbox_head_on_return AFTER UPDATE OF state ON outbox
WHEN OLD.state <> 'pending' AND NEW.state = 'pending'
BEGIN
    UPDATE outbox SET head = 0 WHERE state = 'pending' AND ordering_key = NEW.ordering_key
        AND head = 1;
    UPDATE outbox SET head = 1 WHERE id = (
        SELECT p.id FROM outbox p WHERE p.state = 'pending'
        AND p.ordering_key = NEW.ordering_key ORDER BY p.id LIMIT 1);
END;

-- A pending head deleted (by hand) passes the head on.
CREATE TRIGGER outbox_head_on_delete AFTER DELETE ON outbox
WHEN OLD.state = 'pending'
BEGIN
    UPDATE outbox SET head = 1 WHERE head = 0 AND id = (
        SELECT p.id FROM outbox p WHERE p.state = 'pending'
        AND p.ordering_key = OLD.ordering_key ORDER BY p.id LIMIT 1);
END;
