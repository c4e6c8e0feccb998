"""Fetches one day's exchange rates to EUR for jobs/exchange_rates (a command input).

sluice runs it once per partition, in the project folder, with the partition in its
environment (SLUICE_PARTITION_START is the day's start, RFC 3339), and reads the CSV it
writes to stdout. What it says on stderr goes to the run's log with the run id.

A stand-in for an API: it reads sample-data/rates_api/rates.csv. A real one would call the
API here, e.g. urllib.request.urlopen(f"https://rates.example/v1/eur?date={day}").
Only the standard library: `python3 scripts/fetch_rates.py` needs nothing installed.
"""

import csv
import os
import sys

day = os.environ["SLUICE_PARTITION_START"][:10]
print(f"fetching exchange rates for {day} (attempt {os.environ['SLUICE_ATTEMPT']})", file=sys.stderr)

with open("sample-data/rates_api/rates.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["day"] == day]

if not rows:
    # Not published yet: exit 75 (EX_TEMPFAIL) asks sluice to try again later, as [retry] says.
    print(f"no rates published for {day} yet", file=sys.stderr)
    sys.exit(75)

out = csv.DictWriter(sys.stdout, fieldnames=["day", "currency", "rate_to_eur"], lineterminator="\n")
out.writeheader()
out.writerows(rows)
