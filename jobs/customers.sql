-- Each day's changes as exported; the merge keeps each customer's newest.
SELECT customer_id, name, country, segment, email, updated_at, op
FROM changes
