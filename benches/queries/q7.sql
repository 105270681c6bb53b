-- Nexmark q7, highest bid: the bids at the highest price of each 10-second
-- tumbling window (a window aggregate joined back with the bids). Written
-- as a window join: Flink's and RisingWave's texts join on
-- `B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time`
-- (an interval join, which Weir does not run yet), which also matches a bid
-- exactly at a window's end to the next window's maximum.
-- tables: bid
-- streaming:
SELECT B.auction, B.price, B.bidder, B.date_time
FROM tumble(bid, date_time, INTERVAL '10' SECOND) AS B
JOIN (
  SELECT max(price) AS maxprice, window_start
  FROM tumble(bid, date_time, INTERVAL '10' SECOND)
  GROUP BY window_start
) AS B1
ON B.window_start = B1.window_start AND B.price = B1.maxprice
-- batch:
SELECT B.auction, B.price, B.bidder, B.date_time
FROM (
  SELECT auction, price, bidder, date_time,
         date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') AS window_start
  FROM bid
) AS B
JOIN (
  SELECT max(price) AS maxprice,
         date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') AS window_start
  FROM bid
  GROUP BY 2
) AS B1
ON B.window_start = B1.window_start AND B.price = B1.maxprice
