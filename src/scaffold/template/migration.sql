-- The job's table. Schemas change only through migrations (`sluice migrate`).
CREATE TABLE page_visits (
    page            STRING NOT NULL,
    visits          BIGINT NOT NULL,
    seconds_on_page BIGINT,
    dt              DATE   NOT NULL
)
PARTITIONED BY (dt)
COMMENT 'Visits per page and day';
