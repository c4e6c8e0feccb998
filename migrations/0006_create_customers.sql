-- Customers as the customer system has them now: its daily export of changes merged by
-- customer_id (jobs/customers.toml). Unpartitioned: a dimension is read whole.
CREATE TABLE customers (
    customer_id  BIGINT    NOT NULL,
    name         STRING,
    country      STRING,
    segment      STRING,
    email        STRING,
    updated_at   TIMESTAMP NOT NULL,
    op           STRING    NOT NULL
);

-- Every version of each customer's country, segment and email, with the interval it held
-- (jobs/customers_history.toml). sluice fills valid_from, valid_to and is_current.
CREATE TABLE customers_history (
    customer_id  BIGINT    NOT NULL,
    name         STRING,
    country      STRING,
    segment      STRING,
    email        STRING,
    updated_at   TIMESTAMP NOT NULL,
    op           STRING    NOT NULL,
    valid_from   TIMESTAMP,
    valid_to     TIMESTAMP,
    is_current   BOOLEAN
);
