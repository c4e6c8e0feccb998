-- Each region's orders of a day, per customer: one partition per (day, region).
CREATE TABLE regional_orders (
    dt             DATE      NOT NULL,
    region         STRING    NOT NULL,
    customer_id    BIGINT    NOT NULL,
    orders         BIGINT    NOT NULL,
    revenue        DECIMAL(22,2) NOT NULL,
    first_order_ts TIMESTAMP NOT NULL COMMENT 'the customer''s first order of the day (UTC)'
)
PARTITIONED BY (dt, region)
COMMENT 'Orders per customer, by day and region';
