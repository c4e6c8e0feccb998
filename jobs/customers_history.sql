-- Each day's changes as exported; the history is derived from them all.
SELECT customer_id, name, country, segment, email, updated_at, op
FROM changes
