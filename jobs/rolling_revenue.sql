-- Only the window's 7 days of daily_revenue are read (the first days of the data have
-- fewer: `days` says how many).
SELECT
    CAST($partition_start AS DATE)       AS dt,
    region,
    CAST(SUM(revenue) AS DECIMAL(18, 2)) AS revenue_7d,
    SUM(orders)                          AS orders_7d,
    COUNT(DISTINCT dt)                   AS days
FROM daily_revenue
GROUP BY region
