-- Nexmark q5, hot items: the auctions with the most bids in each hopping
-- window of 10 seconds every 2 seconds (a window aggregate joined with its
-- maximum per window).
-- tables: bid
-- streaming:
SELECT AuctionBids.auction, AuctionBids.num
FROM (
  SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
  FROM hop(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
  GROUP BY auction, window_start, window_end
) AS AuctionBids
JOIN (
  SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
  FROM (
    SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
    FROM hop(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
    GROUP BY auction, window_start, window_end
  ) AS CountBids
  GROUP BY CountBids.starttime, CountBids.endtime
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
   AND AuctionBids.num >= MaxBids.maxn
-- batch:
WITH hops AS (
  SELECT b.auction,
         date_bin(INTERVAL '2 seconds', b.date_time, TIMESTAMP '1970-01-01') - o.back AS starttime
  FROM bid AS b
  CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds'),
                     (INTERVAL '6 seconds'), (INTERVAL '8 seconds')) AS o(back)
), counts AS (
  SELECT auction, starttime, count(*) AS num FROM hops GROUP BY auction, starttime
)
SELECT c.auction, c.num
FROM counts AS c
JOIN (SELECT starttime, max(num) AS maxn FROM counts GROUP BY starttime) AS m
ON c.starttime = m.starttime AND c.num >= m.maxn
