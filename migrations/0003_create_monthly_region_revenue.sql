-- Revenue per month and region, rolled up from daily_revenue. `month` is the month's first day.
CREATE TABLE monthly_region_revenue (
    month             DATE   NOT NULL,
    region            STRING NOT NULL,
    revenue           DECIMAL(18,2) NOT NULL,
    orders            BIGINT NOT NULL,
    active_days       BIGINT NOT NULL,
    avg_daily_revenue DECIMAL(18,2)
)
PARTITIONED BY (month);
