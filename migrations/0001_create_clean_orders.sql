-- Orders from the shop's export with cancellations dropped: one partition per day.
-- Money is DECIMAL: sums are exact, so they do not depend on the order rows are added in.
CREATE TABLE clean_orders (
    order_id    BIGINT    NOT NULL COMMENT 'the shop''s order number',
    order_ts    TIMESTAMP NOT NULL COMMENT 'when the order was placed (UTC)',
    customer_id BIGINT    NOT NULL,
    region      STRING    NOT NULL,
    category    STRING    NOT NULL,
    quantity    INT       NOT NULL,
    unit_price  DECIMAL(10,2) NOT NULL,
    amount      DECIMAL(12,2) NOT NULL COMMENT 'quantity * unit_price',
    status      STRING    NOT NULL COMMENT 'paid or refunded',
    dt          DATE      NOT NULL,
    record_id   STRING    NOT NULL COMMENT 'hash of order_id: equal on every run'
)
PARTITIONED BY (dt)
COMMENT 'Orders without cancellations';
