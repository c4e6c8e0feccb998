-- Revenue per month and region, rolled up from daily_revenue. `month` is the month's first day.
CREATE TABLE monthly_region_revenue (
    month             DATE   NOT NULL,
    region            STRING NOT NULL,
    revenue           DOUBLE NOT NULL,
    orders            BIGINT NOT NULL,
    active_days       BIGINT NOT NULL,
    avg_daily_revenue DOUBLE
)
PARTITIONED BY (month);
