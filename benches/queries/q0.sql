-- Nexmark q0, passthrough: every bid, as it comes. Measures the cost of
-- generating, moving and delivering rows.
-- tables: bid
-- streaming:
SELECT auction, bidder, price, date_time, extra FROM bid
-- batch:
SELECT auction, bidder, price, date_time, extra FROM bid
