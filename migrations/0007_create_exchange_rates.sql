-- Each day's exchange rates to EUR, from a script (jobs/exchange_rates.toml).
CREATE TABLE exchange_rates (
    currency     STRING NOT NULL,
    rate_to_eur  DOUBLE NOT NULL,
    dt           DATE   NOT NULL
) PARTITIONED BY (dt);
