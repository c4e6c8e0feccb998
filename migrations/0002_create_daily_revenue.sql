-- Revenue per day, region and category.
CREATE TABLE daily_revenue (
    dt        DATE   NOT NULL,
    region    STRING NOT NULL,
    category  STRING NOT NULL,
    revenue   DECIMAL(18,2) NOT NULL,
    orders    BIGINT NOT NULL,
    customers BIGINT NOT NULL COMMENT 'distinct customers who ordered'
)
PARTITIONED BY (dt);
