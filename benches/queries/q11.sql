-- Nexmark q11, user sessions: bids per bidder in each session of activity
-- (a session closes after 10 seconds without a bid).
-- tables: bid
-- streaming:
SELECT bidder, count(*) AS bid_count, window_start AS starttime, window_end AS endtime
FROM session(bid, date_time, INTERVAL '10' SECOND)
GROUP BY bidder, window_start, window_end
-- batch:
SELECT bidder, count(*) AS bid_count, min(date_time) AS starttime,
       max(date_time) + INTERVAL '10' SECOND AS endtime
FROM (
  SELECT bidder, date_time,
         sum(new_session) OVER (PARTITION BY bidder ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS sid
  FROM (
    SELECT bidder, date_time,
           CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
                     <= INTERVAL '10' SECOND THEN 0 ELSE 1 END AS new_session
    FROM bid
  ) AS marked
) AS numbered
GROUP BY bidder, sid
