-- Nexmark q1, currency conversion: bid prices from dollars to euros.
-- tables: bid
-- streaming:
SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid
-- batch:
SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid
