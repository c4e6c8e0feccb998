-- One day of visits per page. The partition column `dt` is left out: sluice fills it in.
SELECT
    page,
    count(*) AS visits,
    sum(seconds) AS seconds_on_page
FROM visits
GROUP BY page
