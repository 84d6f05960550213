-- When each claim of a call was made, and, for a call whose earlier attempt never had its
-- outcome recorded (its process died, or its lease ran out, after the call may have reached
-- Slack), the time of the earliest such claim: the sender looks in Slack for what that
-- attempt may have posted before posting again.
ALTER TABLE outbox ADD COLUMN claimed_at BIGINT;
ALTER TABLE outbox ADD COLUMN unconfirmed_since BIGINT;
