-- Bids per auction in hopping windows of 10 seconds every 2 seconds (the
-- aggregate inside Nexmark q5).
-- tables: bid
-- streaming:
SELECT auction, window_start, count(*) AS num
FROM hop(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end
-- batch:
SELECT auction, window_start, count(*) AS num
FROM (
  SELECT b.auction,
         date_bin(INTERVAL '2 seconds', b.date_time, TIMESTAMP '1970-01-01') - o.back AS window_start,
         date_bin(INTERVAL '2 seconds', b.date_time, TIMESTAMP '1970-01-01') - o.back + INTERVAL '10 seconds' AS window_end
  FROM bid AS b
  CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds'),
                     (INTERVAL '6 seconds'), (INTERVAL '8 seconds')) AS o(back)
) AS w
GROUP BY auction, window_start, window_end
