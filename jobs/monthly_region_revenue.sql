-- $partition_start and $partition_end are bound as timestamps; the filter is redundant with
-- the partitions sluice reads, and kept as an example of the parameters.
SELECT
    CAST($partition_start AS DATE)   AS month,
    region,
    CAST(SUM(revenue) AS DECIMAL(18, 2)) AS revenue,
    SUM(orders)                      AS orders,
    COUNT(DISTINCT dt)               AS active_days,
    CAST(SUM(revenue) / COUNT(DISTINCT dt) AS DECIMAL(18, 2)) AS avg_daily_revenue
FROM daily_revenue
WHERE dt >= CAST($partition_start AS DATE)
  AND dt <  CAST($partition_end AS DATE)
GROUP BY region
