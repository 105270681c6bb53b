-- The highest bid of each 10-second tumbling window (the aggregate inside
-- Nexmark q7).
-- tables: bid
-- streaming:
SELECT window_start, max(price) AS top
FROM tumble(bid, date_time, INTERVAL '10' SECOND)
GROUP BY window_start
-- batch:
SELECT date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') AS window_start,
       max(price) AS top
FROM bid
GROUP BY 1
