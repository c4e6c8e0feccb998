-- One day's rates. The partition column `dt` is left out: sluice fills it in.
SELECT currency, rate_to_eur FROM rates WHERE day = CAST($partition AS DATE)
