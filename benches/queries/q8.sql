-- Nexmark q8, monitor new users: people who opened an auction in the same
-- 10-second window in which they registered (a window join).
-- tables: auction, person
-- streaming:
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM tumble(person, date_time, INTERVAL '10' SECOND)
  GROUP BY id, name, window_start, window_end
) AS P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM tumble(auction, date_time, INTERVAL '10' SECOND)
  GROUP BY seller, window_start, window_end
) AS A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime
-- batch:
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') AS starttime
  FROM person
  GROUP BY 1, 2, 3
) AS P
JOIN (
  SELECT seller, date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01') AS starttime
  FROM auction
  GROUP BY 1, 2
) AS A
ON P.id = A.seller AND P.starttime = A.starttime
