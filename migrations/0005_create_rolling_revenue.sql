-- Revenue per region over the 7 days up to each day (a rolling window of daily_revenue).
CREATE TABLE rolling_revenue (
    dt           DATE   NOT NULL,
    region       STRING NOT NULL,
    revenue_7d   DECIMAL(18,2) NOT NULL,
    orders_7d    BIGINT NOT NULL,
    days         BIGINT NOT NULL
)
PARTITIONED BY (dt);
