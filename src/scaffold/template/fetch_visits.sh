#!/bin/sh
# Fetches one day's visits for jobs/page_visits: sluice runs it once per day and reads the
# CSV it writes to stdout; what it says on stderr goes to the run's log.
#
# A stand-in for an API: it prints data/visits/dt=<day>/visits.csv. A real one would call
# the API here, e.g. curl -fsS "https://analytics.example/v1/visits?date=$day".
set -eu
day=$(printf '%s' "$SLUICE_PARTITION_START" | cut -c1-10)
echo "fetching visits for $day" >&2
file="data/visits/dt=$day/visits.csv"
if [ ! -f "$file" ]; then
    echo "no visits exported for $day yet" >&2
    exit 75
fi
cat "$file"
