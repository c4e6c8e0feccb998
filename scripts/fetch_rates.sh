#!/bin/sh
# Fetches one day's exchange rates to EUR for jobs/exchange_rates (a command input).
# sluice runs it once per partition with the partition in its environment and reads the
# CSV it writes to stdout; what it says on stderr goes to the run's log.
#
# A stand-in for an API: it reads sample-data/rates_api/rates.csv. A real one would call
# the API here, e.g. curl -fsS "https://rates.example/v1/eur?date=$day".
set -eu
day=$(printf '%s' "$SLUICE_PARTITION_START" | cut -c1-10)
echo "fetching exchange rates for $day (attempt $SLUICE_ATTEMPT)" >&2
rates=$(awk -F, -v day="$day" 'NR > 1 && $1 == day' sample-data/rates_api/rates.csv)
if [ -z "$rates" ]; then
    # Not published yet: exit 75 (EX_TEMPFAIL) asks sluice to try again later.
    echo "no rates published for $day yet" >&2
    exit 75
fi
echo "day,currency,rate_to_eur"
printf '%s\n' "$rates"
