SELECT
    dt,
    region,
    category,
    SUM(amount)                 AS revenue,
    COUNT(*)                    AS orders,
    COUNT(DISTINCT customer_id) AS customers
FROM clean_orders
GROUP BY dt, region, category
