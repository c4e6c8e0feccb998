-- One region's orders of one day, per customer. $key is the partition's region, bound as
-- a value like $partition (never spliced into the text).
SELECT
    dt,
    region,
    customer_id,
    count(*)      AS orders,
    sum(amount)   AS revenue,
    min(order_ts) AS first_order_ts
FROM clean_orders
WHERE region = $key
GROUP BY dt, region, customer_id
