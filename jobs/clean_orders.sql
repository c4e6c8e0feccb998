-- One day of orders. The partition column `dt` is left out: sluice fills it in.
SELECT
    order_id,
    order_ts,
    customer_id,
    region,
    category,
    quantity,
    unit_price,
    CAST(quantity * unit_price AS DECIMAL(12, 2)) AS amount,
    status
FROM orders
WHERE status <> 'cancelled'
