SELECT
    dt,
    region,
    category,
    CAST(SUM(amount) AS DECIMAL(18, 2)) AS revenue,
    COUNT(*)                            AS orders,
    COUNT(DISTINCT customer_id)         AS customers
FROM clean_orders
GROUP BY dt, region, category
