\set ws random(1, 1000)
\set member (:ws - 1) * 10 + random(1, 10)
\set c random(1000, 3998)
WITH debit AS (
  UPDATE ws_balance SET available = available - :c, consumed = consumed + :c
  WHERE ws = :ws AND available >= :c RETURNING ws
)
INSERT INTO usage_events(id, ws, member, credits, at) SELECT gen_random_uuid(), ws, :member, :c, now() FROM debit;
