-- One day of orders. The partition column `dt` is left out: sluice fills it in.
SELECT
    order_id,
    order_ts,
    customer_id,
    region,
    category,
    quantity,
    unit_price,
    quantity * unit_price AS amount,
    status
FROM orders
WHERE status <> 'cancelled'
